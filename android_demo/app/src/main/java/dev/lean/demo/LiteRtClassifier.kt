package dev.lean.demo

import android.os.Build
import dev.lean.core.Accelerator
import dev.lean.core.ModelInfo
import dev.lean.core.WindowClassifier
import java.nio.ByteBuffer
import java.nio.ByteOrder
import org.tensorflow.lite.Delegate
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate

/**
 * One LiteRT interpreter (Interpreter API) running an exported audio classifier on one window:
 * float32 waveform [1, W] (or [W]) in, float32 probabilities [1, C] out.
 */
class LiteRtClassifier private constructor(
    private val interpreter: Interpreter,
    private val delegate: Delegate?,
    val info: ModelInfo,
    /** The accelerator actually running the model (CPU after a fallback). */
    val accelerator: Accelerator,
) : WindowClassifier, AutoCloseable {

    private val input = ByteBuffer.allocateDirect(info.inputLength() * FLOAT_BYTES)
        .order(ByteOrder.nativeOrder())
    private val output = ByteBuffer.allocateDirect(info.numClasses() * FLOAT_BYTES)
        .order(ByteOrder.nativeOrder())

    override fun windowSamples(): Int = info.windowSamples()

    override fun numClasses(): Int = info.numClasses()

    override fun classify(window: FloatArray, scores: FloatArray) {
        input.rewind()
        input.asFloatBuffer().put(window, 0, info.inputLength())
        output.rewind()
        interpreter.run(input, output)
        output.rewind()
        output.asFloatBuffer().get(scores, 0, info.numClasses())
    }

    override fun close() {
        interpreter.close()
        delegate?.close()
    }

    /** A classifier and, when the requested accelerator could not be used, why. */
    class Created(val classifier: LiteRtClassifier, val requested: Accelerator, val fallbackReason: String?)

    companion object {
        private const val FLOAT_BYTES = 4

        /**
         * Builds the interpreter for [model] on [accelerator].
         *
         * @param model the whole .tflite file (memory-mapped)
         * @param info the model's parsed metadata
         * @param allowFallback on a GPU or NNAPI failure, run on the CPU (XNNPACK) instead of
         *     throwing; live tagging allows it, evaluation does not (its latency would be mislabelled)
         */
        fun create(
            model: ByteBuffer,
            info: ModelInfo,
            accelerator: Accelerator,
            threads: Int,
            allowFallback: Boolean,
        ): Created {
            require(info.channels() == 1) { "only mono models are supported, this one has ${info.channels()} channels" }
            return try {
                Created(build(model, info, accelerator, threads), accelerator, null)
            } catch (e: Exception) {
                if (!allowFallback || accelerator == Accelerator.CPU || accelerator == Accelerator.XNNPACK) {
                    throw e
                }
                val reason = "${accelerator.key()} unavailable (${e.message ?: e.javaClass.simpleName}); running on CPU"
                Created(build(model, info, Accelerator.XNNPACK, threads), accelerator, reason)
            }
        }

        private fun build(model: ByteBuffer, info: ModelInfo, accelerator: Accelerator, threads: Int): LiteRtClassifier {
            val options = Interpreter.Options().setNumThreads(threads)
            val delegate: Delegate? = when (accelerator) {
                Accelerator.CPU -> {
                    options.setUseXNNPACK(false)
                    null
                }
                Accelerator.XNNPACK -> {
                    options.setUseXNNPACK(true)
                    null
                }
                Accelerator.GPU -> CompatibilityList().use { compatibility ->
                    if (!compatibility.isDelegateSupportedOnThisDevice) {
                        throw UnsupportedOperationException("the GPU delegate does not support this device")
                    }
                    GpuDelegate(compatibility.bestOptionsForThisDevice)
                }
                Accelerator.NNAPI -> {
                    if (Build.VERSION.SDK_INT < Build.VERSION_CODES.O_MR1) {
                        throw UnsupportedOperationException("NNAPI needs Android 8.1 or later")
                    }
                    NnApiDelegate()
                }
            }
            delegate?.let { options.addDelegate(it) }
            val interpreter = try {
                Interpreter(model, options)
            } catch (e: Exception) {
                delegate?.close()
                throw e
            }
            return LiteRtClassifier(interpreter, delegate, info, accelerator)
        }
    }
}
