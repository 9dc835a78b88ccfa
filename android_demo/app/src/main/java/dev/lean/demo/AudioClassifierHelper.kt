package dev.lean.demo

import android.Manifest
import android.annotation.SuppressLint
import android.content.Context
import android.content.pm.PackageManager
import android.media.AudioFormat
import android.media.AudioRecord
import android.media.MediaRecorder
import android.os.Handler
import android.os.Looper
import android.os.SystemClock
import androidx.core.content.ContextCompat
import java.util.concurrent.ThreadFactory
import dev.lean.core.Accelerator
import dev.lean.core.AcceleratorFallback
import dev.lean.core.Category
import dev.lean.core.Failures
import dev.lean.core.LoadedClassifier
import dev.lean.core.ModelInfo
import dev.lean.core.SessionLifecycle
import dev.lean.core.StreamingWindower
import dev.lean.core.TopK
import dev.lean.core.Windows

/**
 * Live audio tagging: microphone -> ring buffer -> one inference per hop -> top-k labels.
 *
 * Recording and inference run on one worker thread; the [Listener] is called on the main thread,
 * and only while the session that produced the call is active. Sample rate, window length and
 * labels come from the model file's metadata. Start and stop go through one process-wide
 * [SessionLifecycle] (dev.lean.core, tested on the JVM): they never block the main thread, and
 * there is never more than one microphone and one interpreter open, even across a quick
 * pause/resume or a recreated activity.
 */
class AudioClassifierHelper(
    context: Context,
    private val listener: Listener,
) {
    /** What to run and how. */
    data class Options(
        val model: ModelSource = ModelSource.BUNDLED,
        val accelerator: Accelerator = Accelerator.XNNPACK,
        val threads: Int = 2,
        val topK: Int = 5,
        /** Hop between windows as a fraction of the window (0.5: the paper's 50 % overlap). */
        val hopFraction: Double = Windows.DEFAULT_HOP_FRACTION,
    )

    interface Listener {
        /** The model is loaded; [note] says why another accelerator than requested is used, if so. */
        fun onModelReady(info: ModelInfo, accelerator: Accelerator, note: String?)

        fun onResult(results: List<Category>, inferenceTimeMs: Long)

        fun onError(error: String)
    }

    private val appContext = context.applicationContext
    private val mainHandler = Handler(Looper.getMainLooper())

    /**
     * Starts recording and tagging with [options]; needs the RECORD_AUDIO permission. Idempotent:
     * false (nothing changes) while a session is active. After [stop], the new session starts
     * once the previous worker has released the microphone and the model.
     */
    fun start(options: Options): Boolean = LIFECYCLE.start { session -> runLoop(session, options) }

    /** Stops tagging and returns at once; the worker releases everything within one hop. */
    fun stop() = LIFECYCLE.stop()

    private fun runLoop(session: SessionLifecycle.Session, options: Options) {
        var classifier: LoadedClassifier? = null
        var record: AudioRecord? = null
        try {
            val modelBuffer = options.model.load(appContext)
            val info = ModelInfo.read(modelBuffer)
            // GPU/NNAPI failures of every kind (UnsatisfiedLinkError included) fall back to XNNPACK.
            val outcome = AcceleratorFallback.create(
                LiteRtClassifier.FACTORY, modelBuffer, info, options.accelerator, options.threads, true,
            )
            val liveClassifier = outcome.classifier.also { classifier = it }
            // A slow GPU set-up can outlast onPause: a stopped session never opens the microphone.
            if (!session.isActive) return
            val usedAccelerator = liveClassifier.delegation().accelerator()
            post(session) { listener.onModelReady(info, usedAccelerator, outcome.fallbackReason) }

            val hop = Windows.hopSamples(info.windowSamples(), options.hopFraction)
            val microphone = openMicrophone(info.sampleRate(), hop).also { record = it }
            microphone.startRecording()
            val windower = StreamingWindower(info.windowSamples(), hop)
            val chunk = FloatArray(info.windowSamples())
            val window = FloatArray(info.windowSamples())
            val scores = FloatArray(info.numClasses())
            while (session.isActive) {
                // Blocking reads of one hop align windows on hop boundaries of the stream.
                val read = microphone.read(chunk, 0, hop, AudioRecord.READ_BLOCKING)
                if (read < 0) throw IllegalStateException("microphone read failed (AudioRecord error $read)")
                windower.append(chunk, 0, read)
                // Whatever arrived during the last inference: catch up instead of lagging behind.
                var pending = microphone.read(chunk, 0, chunk.size, AudioRecord.READ_NON_BLOCKING)
                while (pending > 0) {
                    windower.append(chunk, 0, pending)
                    pending = microphone.read(chunk, 0, chunk.size, AudioRecord.READ_NON_BLOCKING)
                }
                if (!windower.takeWindow(window)) continue
                val start = SystemClock.elapsedRealtimeNanos()
                liveClassifier.classify(window, scores)
                val elapsedMs = (SystemClock.elapsedRealtimeNanos() - start) / 1_000_000
                val top = TopK.categories(scores, options.topK, info)
                post(session) { listener.onResult(top, elapsedMs) }
            }
        } catch (e: Throwable) {
            if (!Failures.isRecoverable(e)) throw e
            post(session) { listener.onError(e.message ?: Failures.describe(e)) }
        } finally {
            record?.let {
                if (it.recordingState == AudioRecord.RECORDSTATE_RECORDING) it.stop()
                it.release()
            }
            classifier?.close()
        }
    }

    @SuppressLint("MissingPermission") // checked just below; the activity requests it
    private fun openMicrophone(sampleRate: Int, hopSamples: Int): AudioRecord {
        if (ContextCompat.checkSelfPermission(appContext, Manifest.permission.RECORD_AUDIO) != PackageManager.PERMISSION_GRANTED) {
            throw SecurityException("the microphone permission was not granted")
        }
        val minBytes = AudioRecord.getMinBufferSize(sampleRate, AudioFormat.CHANNEL_IN_MONO, AudioFormat.ENCODING_PCM_FLOAT)
        if (minBytes <= 0) {
            throw IllegalStateException("this device cannot record mono float audio at $sampleRate Hz")
        }
        val format = AudioFormat.Builder()
            .setSampleRate(sampleRate)
            .setChannelMask(AudioFormat.CHANNEL_IN_MONO)
            .setEncoding(AudioFormat.ENCODING_PCM_FLOAT)
            .build()
        val record = AudioRecord.Builder()
            .setAudioSource(MediaRecorder.AudioSource.UNPROCESSED.takeIf { supportsUnprocessed() } ?: MediaRecorder.AudioSource.MIC)
            .setAudioFormat(format)
            // Room for a few hops so audio is not lost while one inference runs.
            .setBufferSizeInBytes(maxOf(minBytes, hopSamples * FLOAT_BYTES * 4))
            .build()
        if (record.state != AudioRecord.STATE_INITIALIZED) {
            record.release()
            throw IllegalStateException("the microphone could not be opened at $sampleRate Hz")
        }
        return record
    }

    /** Unprocessed audio (no noise suppression or AGC) is closer to the training data, when offered. */
    private fun supportsUnprocessed(): Boolean {
        val audioManager = appContext.getSystemService(Context.AUDIO_SERVICE) as android.media.AudioManager
        return audioManager.getProperty(android.media.AudioManager.PROPERTY_SUPPORT_AUDIO_SOURCE_UNPROCESSED) == "true"
    }

    /** Runs [action] on the main thread unless [session] has been stopped by then. */
    private fun post(session: SessionLifecycle.Session, action: () -> Unit) {
        mainHandler.post { if (session.isActive) action() }
    }

    private companion object {
        const val FLOAT_BYTES = 4

        // One per process: the microphone and the delegate are process-wide resources.
        val LIFECYCLE = SessionLifecycle(ThreadFactory { Thread(it, "lean-audio-classifier") })
    }
}
