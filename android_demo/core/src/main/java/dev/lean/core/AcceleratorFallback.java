package dev.lean.core;

import java.nio.ByteBuffer;

/**
 * Builds a classifier on the requested accelerator and decides what happens when it fails.
 *
 * <p>A GPU or NNAPI delegate fails in two ways: an {@link Exception} (device not supported, the
 * delegate cannot be applied to this graph) or a {@link LinkageError} (the delegate's native
 * library is absent, as {@code UnsatisfiedLinkError}, or one of its classes, as
 * {@code NoClassDefFoundError}). Both are answered: live tagging falls back to XNNPACK and says
 * why; an evaluation never falls back, since its latency would then be labelled with the wrong
 * accelerator, and reports the reason instead.
 */
public final class AcceleratorFallback {
    /** The CPU path every fallback uses. */
    public static final Accelerator FALLBACK = Accelerator.XNNPACK;

    /** A classifier and, when it runs on another accelerator than requested, why. */
    public static final class Outcome {
        public final LoadedClassifier classifier;
        public final Accelerator requested;
        /** Null when the requested accelerator runs the model. */
        public final String fallbackReason;

        Outcome(LoadedClassifier classifier, Accelerator requested, String fallbackReason) {
            this.classifier = classifier;
            this.requested = requested;
            this.fallbackReason = fallbackReason;
        }
    }

    private AcceleratorFallback() {
    }

    /**
     * Builds the classifier on {@code requested}, falling back to {@link #FALLBACK} if allowed.
     *
     * @param factory builds a classifier on one accelerator
     * @param model the whole .tflite file
     * @param info its parsed metadata
     * @param requested the accelerator asked for
     * @param threads CPU threads
     * @param allowFallback run on XNNPACK when a GPU or NNAPI delegate fails, instead of throwing
     * @return the classifier, with the fallback reason if one was taken
     * @throws AcceleratorException naming the accelerator and the failure (and the fallback's)
     */
    public static Outcome create(ClassifierFactory factory, ByteBuffer model, ModelInfo info,
            Accelerator requested, int threads, boolean allowFallback)
            throws AcceleratorException {
        Throwable failure;
        try {
            return new Outcome(factory.create(model, info, requested, threads), requested, null);
        } catch (Exception | LinkageError e) {
            failure = e;
        }
        String reason = requested.key() + " unavailable (" + Failures.describe(failure) + ")";
        boolean isDelegate = requested == Accelerator.GPU || requested == Accelerator.NNAPI;
        if (!allowFallback || !isDelegate) {
            throw new AcceleratorException(reason, failure);
        }
        try {
            LoadedClassifier fallback = factory.create(model, info, FALLBACK, threads);
            return new Outcome(fallback, requested, reason + "; running on the CPU ("
                    + FALLBACK.key() + ") instead");
        } catch (Exception | LinkageError e) {
            throw new AcceleratorException(reason + "; the " + FALLBACK.key()
                    + " fallback failed too (" + Failures.describe(e) + ")", e);
        }
    }
}
