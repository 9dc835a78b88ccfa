package dev.lean.core;

/** A classifier built on one accelerator, holding native resources until closed. */
public interface LoadedClassifier extends WindowClassifier, AutoCloseable {
    /** Where the model runs and how much of it the delegate took. */
    Delegation delegation();

    /** Releases the interpreter and its delegate; on the thread that created them. */
    @Override
    void close();
}
