package dev.lean.demo

import android.os.Bundle
import android.os.Handler
import android.os.Looper
import android.util.Log
import android.view.WindowManager
import androidx.appcompat.app.AppCompatActivity
import dev.lean.core.EvalException
import dev.lean.core.EvalJob
import dev.lean.core.EvalRunner
import dev.lean.core.EvalStatus
import dev.lean.core.ModelInfo
import dev.lean.core.ModelFormatException
import dev.lean.demo.databinding.ActivityEvalBinding
import java.io.File
import java.io.FileInputStream
import java.nio.channels.FileChannel
import java.util.concurrent.atomic.AtomicBoolean

/**
 * The on-device evaluation entry point of `lean-bench adb-eval` (benchmarks/DEVICE_EVAL.md):
 * `adb shell am start -W -n dev.lean.demo/.EvalActivity --es job JOB_ID` scores
 * files/eval/JOB_ID/windows.f32 into scores.f32, keeps status.properties current, then finishes.
 */
class EvalActivity : AppCompatActivity() {
    private lateinit var binding: ActivityEvalBinding
    private val mainHandler = Handler(Looper.getMainLooper())

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        binding = ActivityEvalBinding.inflate(layoutInflater)
        setContentView(binding.root)
        // A sleeping screen can throttle or pause the job; keep it on while this activity is up.
        window.addFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON)
        val jobId = intent.getStringExtra(EXTRA_JOB)
        if (!RUNNING.compareAndSet(false, true)) {
            show(getString(R.string.eval_already_running))
            finish()
            return
        }
        Thread({ runJob(jobId) }, "lean-eval").start()
    }

    private fun runJob(jobId: String?) {
        try {
            val root = File(getExternalFilesDir(null), EVAL_FOLDER)
            val directory = try {
                EvalJob.directoryOf(root, jobId)
            } catch (e: EvalException) {
                show(e.message.orEmpty())
                return
            }
            if (!directory.isDirectory) {
                show(getString(R.string.eval_no_job, directory.path))
                return
            }
            val status = try {
                evaluate(directory)
            } catch (e: Exception) {
                // The job could not start (bad job files, unreadable model, unusable delegate).
                val reason = if (e is EvalException || e is ModelFormatException) e.message else "${e.javaClass.simpleName}: ${e.message}"
                EvalStatus(EvalStatus.State.ERROR, 0, numWindowsOrZero(directory), 0, Double.NaN, reason)
                    .also { it.write(File(directory, EvalJob.STATUS_FILE)) }
            }
            show(describe(status))
            Log.i(TAG, "job $jobId: ${describe(status)}")
        } catch (e: Exception) {
            Log.e(TAG, "job $jobId failed", e)
            show(e.message ?: e.javaClass.simpleName)
        } finally {
            RUNNING.set(false)
            mainHandler.post { finish() }
        }
    }

    private fun evaluate(directory: File): EvalStatus {
        val job = EvalJob.read(directory)
        val model = FileInputStream(job.modelFile()).channel.use {
            it.map(FileChannel.MapMode.READ_ONLY, 0, it.size())
        }
        val info = ModelInfo.read(model)
        job.checkModel(info)
        // No fallback: a latency labelled "gpu" must have been measured on the GPU.
        val created = LiteRtClassifier.create(model, info, job.accelerator(), job.threads(), allowFallback = false)
        return created.classifier.use { classifier ->
            EvalRunner(job, classifier) { status -> show(describe(status)) }.run()
        }
    }

    private fun numWindowsOrZero(directory: File): Int =
        try {
            EvalJob.read(directory).numWindows()
        } catch (e: EvalException) {
            0
        }

    private fun describe(status: EvalStatus): String = when (status.state) {
        EvalStatus.State.ERROR -> getString(R.string.error, status.error)
        else -> getString(
            R.string.eval_progress,
            status.state.key(),
            status.windowsDone,
            status.numWindows,
            status.meanLatencyMs,
        )
    }

    private fun show(text: String) {
        mainHandler.post { binding.evalStatus.text = text }
    }

    companion object {
        const val EXTRA_JOB = "job"
        const val EVAL_FOLDER = "eval"
        private const val TAG = "LeanEval"
        // One job at a time per process, even if the activity is started twice.
        private val RUNNING = AtomicBoolean(false)
    }
}
