package dev.lean.core;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * A stand-in for the app's LiteRT classifier factory: each accelerator either throws the failure
 * it was given (as a real delegate does: an Exception or a LinkageError) or builds a classifier.
 */
final class StandInFactory implements ClassifierFactory {
    /** Makes the classifier that runs the windows, given the model's metadata. */
    interface Classifiers {
        WindowClassifier make(ModelInfo info);
    }

    private final Classifiers classifiers;
    private final Map<Accelerator, Throwable> failures = new EnumMap<>(Accelerator.class);
    private final Map<Accelerator, int[]> reportedNodes = new EnumMap<>(Accelerator.class);
    final List<Accelerator> attempts = Collections.synchronizedList(new ArrayList<Accelerator>());
    final List<Accelerator> closed = Collections.synchronizedList(new ArrayList<Accelerator>());

    StandInFactory(Classifiers classifiers) {
        this.classifiers = classifiers;
    }

    /** A factory whose classifiers are never run (fallback decisions only). */
    StandInFactory() {
        this(new Classifiers() {
            @Override
            public WindowClassifier make(ModelInfo info) {
                return new EvalRunnerTest.SamplingClassifier(16, 3);
            }
        });
    }

    StandInFactory failing(Accelerator accelerator, Throwable failure) {
        failures.put(accelerator, failure);
        return this;
    }

    /** The "runtime" reports that the delegate took {@code delegated} of {@code total} nodes. */
    StandInFactory reporting(Accelerator accelerator, int delegated, int total) {
        reportedNodes.put(accelerator, new int[] {delegated, total});
        return this;
    }

    @Override
    public LoadedClassifier create(ByteBuffer model, ModelInfo info, final Accelerator accelerator,
            int threads) throws Exception {
        attempts.add(accelerator);
        Throwable failure = failures.get(accelerator);
        if (failure instanceof Exception) {
            throw (Exception) failure;
        }
        if (failure instanceof Error) {
            throw (Error) failure;
        }
        final WindowClassifier inner = classifiers.make(info);
        int[] nodes = reportedNodes.get(accelerator);
        final Delegation delegation = nodes == null ? Delegation.unreported(accelerator)
                : Delegation.reported(accelerator, nodes[0], nodes[1]);
        return new LoadedClassifier() {
            @Override
            public Delegation delegation() {
                return delegation;
            }

            @Override
            public int windowSamples() {
                return inner.windowSamples();
            }

            @Override
            public int numClasses() {
                return inner.numClasses();
            }

            @Override
            public void classify(float[] window, float[] scores) throws Exception {
                inner.classify(window, scores);
            }

            @Override
            public void close() {
                closed.add(accelerator);
            }
        };
    }
}
