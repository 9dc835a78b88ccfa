package dev.lean.demo

import android.Manifest
import android.content.Intent
import android.content.pm.PackageManager
import android.net.Uri
import android.os.Bundle
import android.provider.Settings
import android.view.LayoutInflater
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.core.content.ContextCompat
import dev.lean.core.Accelerator
import dev.lean.core.Category
import dev.lean.core.ModelInfo
import dev.lean.demo.databinding.ActivityMainBinding
import dev.lean.demo.databinding.ItemResultBinding
import java.util.Locale

/** Live tagging screen: a thin UI over [AudioClassifierHelper]. */
class MainActivity : AppCompatActivity(), AudioClassifierHelper.Listener {
    private lateinit var binding: ActivityMainBinding
    private lateinit var models: List<ModelSource>
    private lateinit var helper: AudioClassifierHelper
    private var options = AudioClassifierHelper.Options()
    private var resumed = false
    // After a refusal, ask again only from the button, not on every resume.
    private var permissionRefused = false

    private val requestMicrophone =
        registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
            if (granted) startTagging() else showPermissionRefused()
        }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        binding = ActivityMainBinding.inflate(layoutInflater)
        setContentView(binding.root)
        helper = AudioClassifierHelper(this, this)

        models = ModelSource.available(this)
        binding.modelSpinner.adapter = spinnerAdapter(models.map { it.displayName })
        binding.acceleratorSpinner.adapter = spinnerAdapter(Accelerator.values().map { acceleratorLabel(it) })
        binding.acceleratorSpinner.setSelection(options.accelerator.ordinal)
        binding.modelSpinner.onItemSelectedListener = onSelected { position ->
            restartWith(options.copy(model = models[position]))
        }
        binding.acceleratorSpinner.onItemSelectedListener = onSelected { position ->
            restartWith(options.copy(accelerator = Accelerator.values()[position]))
        }
        binding.grantButton.setOnClickListener { askAgainOrOpenSettings() }
    }

    override fun onResume() {
        super.onResume()
        resumed = true
        when {
            hasMicrophonePermission() -> startTagging()
            permissionRefused -> showPermissionRefused()
            else -> requestMicrophone.launch(Manifest.permission.RECORD_AUDIO)
        }
    }

    override fun onPause() {
        resumed = false
        stopTagging()
        super.onPause()
    }

    private fun startTagging() {
        if (!resumed || !hasMicrophonePermission()) return
        // Idempotent and non-blocking: false while this session already runs.
        if (!helper.start(options)) return
        binding.permissionPanel.visibility = View.GONE
        binding.notice.visibility = View.GONE
        binding.status.text = getString(R.string.loading_model, options.model.displayName)
    }

    /** Returns at once; the worker releases the microphone and the model on its own thread. */
    private fun stopTagging() = helper.stop()

    private fun restartWith(newOptions: AudioClassifierHelper.Options) {
        if (newOptions == options) return
        options = newOptions
        stopTagging()
        startTagging()
    }

    override fun onModelReady(info: ModelInfo, accelerator: Accelerator, note: String?) {
        binding.status.text = getString(
            R.string.model_summary,
            info.name() ?: options.model.displayName,
            info.sampleRate(),
            info.windowSamples(),
            info.numClasses(),
            acceleratorLabel(accelerator),
        )
        if (note != null) {
            binding.notice.text = note
            binding.notice.visibility = View.VISIBLE
        }
    }

    override fun onResult(results: List<Category>, inferenceTimeMs: Long) {
        binding.latency.text = getString(R.string.latency, inferenceTimeMs)
        val rows = binding.results
        while (rows.childCount < results.size) {
            rows.addView(ItemResultBinding.inflate(LayoutInflater.from(this), rows, false).root)
        }
        for (i in 0 until rows.childCount) {
            val row = ItemResultBinding.bind(rows.getChildAt(i))
            row.root.visibility = if (i < results.size) View.VISIBLE else View.GONE
            if (i >= results.size) continue
            row.label.text = results[i].label()
            row.score.text = String.format(Locale.ROOT, "%.3f", results[i].score())
            row.bar.progress = (results[i].score() * row.bar.max).toInt().coerceIn(0, row.bar.max)
        }
    }

    override fun onError(error: String) {
        binding.notice.text = getString(R.string.error, error)
        binding.notice.visibility = View.VISIBLE
        stopTagging()
    }

    private fun hasMicrophonePermission() =
        ContextCompat.checkSelfPermission(this, Manifest.permission.RECORD_AUDIO) == PackageManager.PERMISSION_GRANTED

    private fun showPermissionRefused() {
        permissionRefused = true
        binding.permissionPanel.visibility = View.VISIBLE
        binding.status.text = getString(R.string.permission_refused)
    }

    private fun askAgainOrOpenSettings() {
        permissionRefused = false
        if (shouldShowRequestPermissionRationale(Manifest.permission.RECORD_AUDIO)) {
            requestMicrophone.launch(Manifest.permission.RECORD_AUDIO)
        } else {
            // "Don't ask again" (or a second refusal): only the system settings can grant it now.
            startActivity(Intent(Settings.ACTION_APPLICATION_DETAILS_SETTINGS, Uri.fromParts("package", packageName, null)))
        }
    }

    private fun acceleratorLabel(accelerator: Accelerator) = when (accelerator) {
        Accelerator.CPU -> getString(R.string.accelerator_cpu)
        Accelerator.XNNPACK -> getString(R.string.accelerator_xnnpack)
        Accelerator.GPU -> getString(R.string.accelerator_gpu)
        Accelerator.NNAPI -> getString(R.string.accelerator_nnapi)
    }

    private fun spinnerAdapter(items: List<String>) =
        ArrayAdapter(this, android.R.layout.simple_spinner_item, items).apply {
            setDropDownViewResource(android.R.layout.simple_spinner_dropdown_item)
        }

    private fun onSelected(action: (Int) -> Unit) = object : AdapterView.OnItemSelectedListener {
        override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) = action(position)

        override fun onNothingSelected(parent: AdapterView<*>?) = Unit
    }
}
