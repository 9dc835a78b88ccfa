package dev.lean.core;

/** A model that turns one window of samples into one row of class scores. */
public interface WindowClassifier {
    /** Samples per window (the model's input length). */
    int windowSamples();

    /** Classes per output row. */
    int numClasses();

    /**
     * Runs the model on one window.
     *
     * @param window {@link #windowSamples()} samples
     * @param scores receives {@link #numClasses()} scores
     */
    void classify(float[] window, float[] scores) throws Exception;
}
