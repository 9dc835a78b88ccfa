package dev.lean.core;

/**
 * How much of the model's graph ran where: what lets a latency labelled "gpu" or "nnapi" be read
 * for what it is. A delegate hands the operations it does not support back to the CPU, so such a
 * latency is a pure delegate number only when the delegate took every node.
 */
public final class Delegation {
    /** The {@code latency_coverage} values of status.properties (benchmarks/DEVICE_EVAL.md). */
    public enum Coverage {
        /** No delegate beyond the CPU: every operation ran on the CPU (cpu, xnnpack). */
        CPU("cpu"),
        /** The delegate took every node of the graph. */
        DELEGATE_ALL("delegate-all"),
        /** The delegate took some nodes; the others ran on the CPU, inside the same latency. */
        PARTIAL("partial"),
        /** A delegate ran, and the runtime did not say how many nodes it took. */
        POSSIBLY_PARTIAL("possibly-partial");

        private final String key;

        Coverage(String key) {
            this.key = key;
        }

        public String key() {
            return key;
        }
    }

    /** Unknown count. */
    public static final int UNKNOWN = -1;

    private final Accelerator accelerator;
    private final int delegatedNodes;
    private final int totalNodes;

    private Delegation(Accelerator accelerator, int delegatedNodes, int totalNodes) {
        this.accelerator = accelerator;
        this.delegatedNodes = delegatedNodes;
        this.totalNodes = totalNodes;
    }

    /** The runtime did not report node counts (LiteRT's Java Interpreter API does not). */
    public static Delegation unreported(Accelerator accelerator) {
        return new Delegation(accelerator, UNKNOWN, UNKNOWN);
    }

    /**
     * The runtime reported that the delegate replaced {@code delegatedNodes} of {@code totalNodes}
     * nodes.
     */
    public static Delegation reported(Accelerator accelerator, int delegatedNodes, int totalNodes) {
        if (totalNodes <= 0 || delegatedNodes < 0 || delegatedNodes > totalNodes) {
            throw new IllegalArgumentException("delegated nodes " + delegatedNodes + " of "
                    + totalNodes + " is not a count of a graph's nodes");
        }
        return new Delegation(accelerator, delegatedNodes, totalNodes);
    }

    /** The accelerator the model actually ran on. */
    public Accelerator accelerator() {
        return accelerator;
    }

    /** Nodes the delegate took, or {@link #UNKNOWN}. */
    public int delegatedNodes() {
        return delegatedNodes;
    }

    /** Nodes of the graph, or {@link #UNKNOWN}. */
    public int totalNodes() {
        return totalNodes;
    }

    public Coverage coverage() {
        if (accelerator == Accelerator.CPU || accelerator == Accelerator.XNNPACK) {
            return Coverage.CPU;
        }
        if (totalNodes == UNKNOWN) {
            return Coverage.POSSIBLY_PARTIAL;
        }
        return delegatedNodes == totalNodes ? Coverage.DELEGATE_ALL : Coverage.PARTIAL;
    }
}
