package dev.lean.core;

import java.nio.ByteBuffer;

/** Builds a classifier on exactly one accelerator (the app's LiteRT one; tests use stand-ins). */
public interface ClassifierFactory {
    /**
     * Builds the classifier, or throws whatever the runtime throws: a delegate that cannot be
     * loaded fails with an {@link Exception} or a {@link LinkageError} (a missing native library
     * is an {@link UnsatisfiedLinkError}, a missing class a {@link NoClassDefFoundError}).
     *
     * @param model the whole .tflite file
     * @param info the model's parsed metadata
     * @param accelerator where to run it, never another one
     * @param threads CPU threads
     */
    LoadedClassifier create(ByteBuffer model, ModelInfo info, Accelerator accelerator, int threads)
            throws Exception;
}
