package dev.lean.demo

import android.os.Build
import dev.lean.core.Accelerator
import dev.lean.core.ClassifierFactory
import dev.lean.core.Delegation
import dev.lean.core.LoadedClassifier
import dev.lean.core.ModelInfo
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
 *
 * Built only through [FACTORY], on exactly the accelerator asked for; whether a failed delegate
 * falls back to the CPU is decided by `dev.lean.core.AcceleratorFallback`.
 */
class LiteRtClassifier private constructor(
    private val interpreter: Interpreter,
    private val delegate: Delegate?,
    val info: ModelInfo,
    /** The accelerator running the model. */
    val accelerator: Accelerator,
) : LoadedClassifier {

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

    // LiteRT's Java Interpreter API does not say how many nodes a delegate took (only its native
    // log line "Replacing N out of M node(s) with delegate" does), so a GPU or NNAPI latency is
    // labelled possibly partial.
    override fun delegation(): Delegation = Delegation.unreported(accelerator)

    override fun close() {
        interpreter.close()
        delegate?.close()
    }

    companion object {
        private const val FLOAT_BYTES = 4

        /** Builds classifiers; throws what LiteRT throws (an Exception or a LinkageError). */
        val FACTORY = ClassifierFactory { model, info, accelerator, threads ->
            require(info.channels() == 1) { "only mono models are supported, this one has ${info.channels()} channels" }
            build(model, info, accelerator, threads)
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
            } catch (e: Throwable) {
                // Failed to apply the delegate (or its library failed to link): free it, rethrow.
                delegate?.close()
                throw e
            }
            return LiteRtClassifier(interpreter, delegate, info, accelerator)
        }
    }
}
