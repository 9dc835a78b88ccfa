package dev.lean.demo

import android.content.Context
import android.content.Intent
import android.os.Bundle
import android.os.Handler
import android.os.Looper
import android.util.Log
import android.view.WindowManager
import androidx.appcompat.app.AppCompatActivity
import dev.lean.core.EvalScheduler
import dev.lean.core.EvalStatus
import dev.lean.demo.databinding.ActivityEvalBinding
import java.io.File
import java.io.IOException
import java.util.concurrent.ThreadFactory

/**
 * The on-device evaluation entry point of `lean-bench adb-eval` (benchmarks/DEVICE_EVAL.md):
 * `adb shell am start -W -n dev.lean.demo/.EvalActivity --es job JOB_ID` scores
 * files/eval/JOB_ID/windows.f32 into scores.f32, keeps status.properties current, then finishes.
 *
 * Only a caller holding android.permission.DUMP (the adb shell) may start it (see the manifest).
 * Everything but the screen lives in dev.lean.core: [EvalScheduler] answers each start (one job
 * at a time; another job is refused in its own status file), `EvalSession` runs a job to a final
 * `state=done` or `state=error` whatever fails, delegate linkage errors included.
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
        screen = this
        // Recreated after a configuration change or process-level restart: only a new start counts.
        if (savedInstanceState == null) submit(intent)
    }

    /** A second `am start` reaches the running (singleTask) activity here: answer it too. */
    override fun onNewIntent(intent: Intent) {
        super.onNewIntent(intent)
        setIntent(intent)
        submit(intent)
    }

    override fun onDestroy() {
        if (screen === this) screen = null
        super.onDestroy()
    }

    private fun submit(intent: Intent) {
        val answer = scheduler(this).submit(intent.getStringExtra(EXTRA_JOB), PROGRESS)
        Log.i(TAG, "${answer.decision}: ${answer.message}")
        show(answer.message)
        if (answer.decision == EvalScheduler.Decision.INVALID && scheduler(this).runningJob() == null) {
            finish()
        }
    }

    private fun describe(jobId: String, status: EvalStatus): String = when (status.state) {
        EvalStatus.State.ERROR -> getString(R.string.error, status.error)
        else -> getString(
            R.string.eval_progress,
            "$jobId ${status.state.key()}",
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

        // The activity on screen, if any; jobs outlive activity instances (one scheduler per process).
        @Volatile private var screen: EvalActivity? = null
        private var schedulerInstance: EvalScheduler? = null

        @Synchronized
        private fun scheduler(context: Context): EvalScheduler = schedulerInstance ?: EvalScheduler(
            File(context.applicationContext.getExternalFilesDir(null), EVAL_FOLDER),
            LiteRtClassifier.FACTORY,
            ThreadFactory { Thread(it, "lean-eval") },
        ).also { schedulerInstance = it }

        /** Forwards a job's progress (worker thread) to whichever activity is on screen. */
        private val PROGRESS = object : EvalScheduler.Listener {
            override fun onProgress(jobId: String, status: EvalStatus) {
                screen?.let { it.show(it.describe(jobId, status)) }
            }

            override fun onFinished(jobId: String, status: EvalStatus?, failure: IOException?) {
                if (failure != null) {
                    Log.e(TAG, "job $jobId: its status file could not be written", failure)
                } else {
                    Log.i(TAG, "job $jobId: ${status?.state?.key()} ${status?.error.orEmpty()}")
                }
                val activity = screen ?: return
                if (status != null) activity.show(activity.describe(jobId, status))
                activity.mainHandler.post { activity.finish() }
            }
        }
    }
}
