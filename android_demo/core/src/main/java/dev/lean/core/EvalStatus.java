package dev.lean.core;

import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Reader;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.util.Locale;
import java.util.Properties;

/** The status.properties of an evaluation job (benchmarks/DEVICE_EVAL.md), written atomically. */
public final class EvalStatus {
    /** The job's state, as written in the file. */
    public enum State {
        RUNNING("running"),
        DONE("done"),
        ERROR("error");

        private final String key;

        State(String key) {
            this.key = key;
        }

        public String key() {
            return key;
        }

        public static State fromKey(String key) {
            for (State state : values()) {
                if (state.key.equals(key)) {
                    return state;
                }
            }
            throw new IllegalArgumentException("unknown state '" + key + "'");
        }
    }

    public final State state;
    public final int windowsDone;
    public final int numWindows;
    public final int numClasses;
    /** Mean per-window inference time of the windows run in this session; NaN when none ran. */
    public final double meanLatencyMs;
    /** One line; only for {@link State#ERROR}, otherwise null. */
    public final String error;
    /** Where the windows ran and how much of the graph the delegate took; null before a model ran. */
    public final Delegation delegation;

    public EvalStatus(State state, int windowsDone, int numWindows, int numClasses,
            double meanLatencyMs, String error, Delegation delegation) {
        this.state = state;
        this.windowsDone = windowsDone;
        this.numWindows = numWindows;
        this.numClasses = numClasses;
        this.meanLatencyMs = meanLatencyMs;
        this.error = error == null ? null : oneLine(error);
        this.delegation = delegation;
    }

    /** A job that ended before any window ran: bad job files, a model or delegate that failed. */
    public static EvalStatus failedToStart(int numWindows, String error) {
        return new EvalStatus(State.ERROR, 0, numWindows, 0, Double.NaN, error, null);
    }

    /** Writes the status to {@code file} via {@code file}.tmp and a rename, so readers never see half. */
    public void write(File file) throws IOException {
        Properties properties = new Properties();
        properties.setProperty("state", state.key());
        properties.setProperty("windows_done", Integer.toString(windowsDone));
        properties.setProperty("num_windows", Integer.toString(numWindows));
        properties.setProperty("num_classes", Integer.toString(numClasses));
        if (!Double.isNaN(meanLatencyMs)) {
            properties.setProperty("mean_latency_ms",
                    String.format(Locale.ROOT, "%.4f", meanLatencyMs));
        }
        if (state == State.ERROR) {
            properties.setProperty("error", error == null ? "unknown error" : error);
        }
        if (delegation != null) {
            // A "gpu" latency includes whatever ops the delegate left to the CPU: say how much.
            properties.setProperty("delegate", delegation.accelerator().key());
            properties.setProperty("latency_coverage", delegation.coverage().key());
            if (delegation.totalNodes() != Delegation.UNKNOWN) {
                properties.setProperty("delegated_nodes",
                        Integer.toString(delegation.delegatedNodes()));
                properties.setProperty("total_nodes", Integer.toString(delegation.totalNodes()));
            }
        }
        File temporary = new File(file.getPath() + ".tmp");
        try (FileOutputStream out = new FileOutputStream(temporary)) {
            Writer writer = new OutputStreamWriter(out, StandardCharsets.UTF_8);
            properties.store(writer, null);
            writer.flush();
            out.getFD().sync();
        }
        // rename(2) replaces the destination atomically on Linux and Android.
        if (!temporary.renameTo(file)) {
            throw new IOException("cannot rename " + temporary + " to " + file);
        }
    }

    /** Reads a status file back (the host does this in Python; the app and tests use this). */
    public static EvalStatus read(File file) throws IOException {
        Properties properties = new Properties();
        try (InputStream in = new FileInputStream(file);
                Reader reader = new InputStreamReader(in, StandardCharsets.UTF_8)) {
            properties.load(reader);
        }
        String latency = properties.getProperty("mean_latency_ms");
        try {
            return new EvalStatus(State.fromKey(properties.getProperty("state")),
                    Integer.parseInt(properties.getProperty("windows_done")),
                    Integer.parseInt(properties.getProperty("num_windows")),
                    Integer.parseInt(properties.getProperty("num_classes")),
                    latency == null ? Double.NaN : Double.parseDouble(latency),
                    properties.getProperty("error"), readDelegation(properties));
        } catch (RuntimeException e) {
            throw new IOException(file + ": malformed status (" + e.getMessage() + ")", e);
        }
    }

    private static Delegation readDelegation(Properties properties) {
        String delegate = properties.getProperty("delegate");
        if (delegate == null) {
            return null;
        }
        Accelerator accelerator = Accelerator.fromKey(delegate);
        String total = properties.getProperty("total_nodes");
        if (total == null) {
            return Delegation.unreported(accelerator);
        }
        return Delegation.reported(accelerator,
                Integer.parseInt(properties.getProperty("delegated_nodes")), Integer.parseInt(total));
    }

    private static String oneLine(String text) {
        return text.replace('\r', ' ').replace('\n', ' ').trim();
    }
}
