package dev.lean.demo

import android.content.Context
import java.io.File
import java.io.FileInputStream
import java.io.FileNotFoundException
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel

/** Where the .tflite comes from: bundled in the APK's assets, or pushed to the device with adb. */
sealed class ModelSource {
    abstract val displayName: String

    /** Memory-maps the model; LiteRT and [dev.lean.core.ModelInfo] read it without a copy. */
    abstract fun load(context: Context): MappedByteBuffer

    data class Asset(val path: String) : ModelSource() {
        override val displayName get() = "assets/$path"

        override fun load(context: Context): MappedByteBuffer {
            val descriptor = try {
                context.assets.openFd(path)
            } catch (e: FileNotFoundException) {
                throw FileNotFoundException(
                    "assets/$path is missing: copy an exported model there and rebuild (see README)"
                )
            }
            return descriptor.use {
                FileInputStream(it.fileDescriptor).channel.use { channel ->
                    channel.map(FileChannel.MapMode.READ_ONLY, it.startOffset, it.declaredLength)
                }
            }
        }
    }

    data class PushedFile(val file: File) : ModelSource() {
        override val displayName get() = "files/models/${file.name}"

        override fun load(context: Context): MappedByteBuffer =
            FileInputStream(file).channel.use { channel ->
                channel.map(FileChannel.MapMode.READ_ONLY, 0, channel.size())
            }
    }

    companion object {
        /** The model bundled with the app (see README: the quickstart's exported int8 model). */
        val BUNDLED = Asset("lean.tflite")

        /**
         * Models pushed with `adb push MODEL.tflite /sdcard/Android/data/dev.lean.demo/files/models/`;
         * no storage permission is needed for the app's own external files directory.
         */
        fun pushedModelsDir(context: Context): File? =
            context.getExternalFilesDir(null)?.let { File(it, "models") }

        /** The bundled model first, then every pushed .tflite, by name. */
        fun available(context: Context): List<ModelSource> {
            val pushed = pushedModelsDir(context)
                ?.listFiles { file -> file.isFile && file.name.endsWith(".tflite") }
                .orEmpty()
                .sortedBy { it.name }
                .map { PushedFile(it) }
            return listOf(BUNDLED) + pushed
        }
    }
}
