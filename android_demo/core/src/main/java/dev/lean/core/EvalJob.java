package dev.lean.core;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import java.util.regex.Pattern;

/**
 * One on-device evaluation job: a folder holding model.tflite, windows.f32 and job.properties,
 * as defined in benchmarks/DEVICE_EVAL.md.
 */
public final class EvalJob {
    public static final String MODEL_FILE = "model.tflite";
    public static final String WINDOWS_FILE = "windows.f32";
    public static final String JOB_FILE = "job.properties";
    public static final String SCORES_FILE = "scores.f32";
    public static final String STATUS_FILE = "status.properties";
    public static final int FORMAT_VERSION = 1;

    private static final Pattern JOB_ID = Pattern.compile("[A-Za-z0-9_-]+");

    private final File directory;
    private final int numWindows;
    private final int windowSamples;
    private final int sampleRate;
    private final int threads;
    private final Accelerator accelerator;

    private EvalJob(File directory, int numWindows, int windowSamples, int sampleRate, int threads,
            Accelerator accelerator) {
        this.directory = directory;
        this.numWindows = numWindows;
        this.windowSamples = windowSamples;
        this.sampleRate = sampleRate;
        this.threads = threads;
        this.accelerator = accelerator;
    }

    /**
     * The folder of job {@code jobId} under the app's evaluation root, rejecting ids that could
     * leave it.
     */
    public static File directoryOf(File evalRoot, String jobId) throws EvalException {
        if (jobId == null || !JOB_ID.matcher(jobId).matches()) {
            throw new EvalException("job id '" + jobId + "' must be letters, digits, - or _");
        }
        return new File(evalRoot, jobId);
    }

    /**
     * Reads and checks job.properties and the size of windows.f32.
     *
     * @param directory the job folder
     * @return the job
     * @throws EvalException naming the file and key at fault
     */
    public static EvalJob read(File directory) throws EvalException {
        File jobFile = new File(directory, JOB_FILE);
        Properties properties = new Properties();
        try (InputStream in = new FileInputStream(jobFile);
                Reader reader = new InputStreamReader(in, StandardCharsets.UTF_8)) {
            properties.load(reader);
        } catch (IOException e) {
            throw new EvalException(jobFile + ": cannot read (" + e.getMessage() + ")", e);
        }
        int version = positiveInt(properties, "format_version", jobFile);
        if (version != FORMAT_VERSION) {
            throw new EvalException(jobFile + ": format_version " + version
                    + " is not supported (this app reads " + FORMAT_VERSION + ")");
        }
        int numWindows = positiveInt(properties, "num_windows", jobFile);
        int windowSamples = positiveInt(properties, "window_samples", jobFile);
        int sampleRate = positiveInt(properties, "sample_rate", jobFile);
        int threads = positiveInt(properties, "threads", jobFile);
        Accelerator accelerator;
        try {
            accelerator = Accelerator.fromKey(required(properties, "delegate", jobFile));
        } catch (IllegalArgumentException e) {
            throw new EvalException(jobFile + ": " + e.getMessage(), e);
        }
        File windows = new File(directory, WINDOWS_FILE);
        long expected = (long) numWindows * windowSamples * 4;
        if (!windows.isFile()) {
            throw new EvalException(windows + ": missing");
        }
        if (windows.length() != expected) {
            throw new EvalException(windows + ": " + windows.length() + " bytes, expected "
                    + expected + " (" + numWindows + " x " + windowSamples + " float32)");
        }
        return new EvalJob(directory, numWindows, windowSamples, sampleRate, threads, accelerator);
    }

    private static String required(Properties properties, String key, File file)
            throws EvalException {
        String value = properties.getProperty(key);
        if (value == null || value.trim().isEmpty()) {
            throw new EvalException(file + ": missing key " + key);
        }
        return value.trim();
    }

    private static int positiveInt(Properties properties, String key, File file)
            throws EvalException {
        String value = required(properties, key, file);
        try {
            int parsed = Integer.parseInt(value);
            if (parsed > 0) {
                return parsed;
            }
        } catch (NumberFormatException ignored) {
            // Reported below with the offending value.
        }
        throw new EvalException(file + ": " + key + "=" + value + " is not a positive integer");
    }

    /**
     * Checks the job against the model that will run it.
     *
     * @param model the parsed model.tflite
     */
    public void checkModel(ModelInfo model) throws EvalException {
        if (model.windowSamples() != windowSamples || model.channels() != 1) {
            throw new EvalException(new File(directory, JOB_FILE) + ": window_samples="
                    + windowSamples + " but the model takes " + model.windowSamples()
                    + " samples x " + model.channels() + " channel(s)");
        }
        if (model.sampleRate() != sampleRate) {
            throw new EvalException(new File(directory, JOB_FILE) + ": sample_rate=" + sampleRate
                    + " but the model's metadata says " + model.sampleRate());
        }
    }

    public File directory() {
        return directory;
    }

    public File modelFile() {
        return new File(directory, MODEL_FILE);
    }

    public File windowsFile() {
        return new File(directory, WINDOWS_FILE);
    }

    public File scoresFile() {
        return new File(directory, SCORES_FILE);
    }

    public File statusFile() {
        return new File(directory, STATUS_FILE);
    }

    public int numWindows() {
        return numWindows;
    }

    public int windowSamples() {
        return windowSamples;
    }

    public int sampleRate() {
        return sampleRate;
    }

    public int threads() {
        return threads;
    }

    public Accelerator accelerator() {
        return accelerator;
    }
}
