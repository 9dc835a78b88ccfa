package dev.lean.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.Reader;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.Random;
import org.junit.Assume;
import org.junit.Before;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/**
 * Parity with the Python SDK: the files under -Dlean.golden.dir are written by
 * tests/android_golden.py. Skipped when no golden dir is given, unless -Dlean.golden.required=true
 * (what run-jvm-tests.sh sets when CI passes a dir), in which case a missing dir fails.
 */
public class GoldenParityTest {
    @Rule public TemporaryFolder temporary = new TemporaryFolder();
    private File dir;
    private Properties golden;

    @Before
    public void loadGolden() throws IOException {
        String path = System.getProperty("lean.golden.dir");
        boolean required = Boolean.getBoolean("lean.golden.required");
        if (path == null) {
            if (required) {
                fail("lean.golden.required is set but lean.golden.dir is not");
            }
            Assume.assumeTrue("no -Dlean.golden.dir: golden parity not checked", false);
        }
        dir = new File(path);
        golden = new Properties();
        try (InputStream in = new FileInputStream(new File(dir, "golden.properties"));
                Reader reader = new InputStreamReader(in, StandardCharsets.UTF_8)) {
            golden.load(reader);
        }
    }

    private String get(String key) {
        String value = golden.getProperty(key);
        if (value == null) {
            throw new AssertionError("golden.properties lacks " + key);
        }
        return value;
    }

    private int getInt(String key) {
        return Integer.parseInt(get(key));
    }

    private File file(String key) {
        return new File(dir, get(key));
    }

    private int[] getInts(String key) {
        if (get(key).isEmpty()) {
            return new int[0];
        }
        String[] parts = get(key).split(",");
        int[] values = new int[parts.length];
        for (int i = 0; i < parts.length; i++) {
            values[i] = Integer.parseInt(parts[i]);
        }
        return values;
    }

    private ModelInfo readModel() throws Exception {
        return ModelInfo.read(ByteBuffer.wrap(Files.readAllBytes(file("model.file").toPath())));
    }

    @Test
    public void evalWindowsEqualPythonBitForBit() throws Exception {
        int cases = getInt("windows.cases");
        assertTrue(cases > 0);
        for (int c = 0; c < cases; c++) {
            String prefix = "windows." + c;
            int windowSamples = getInt(prefix + ".window_samples");
            double hopFraction = Double.parseDouble(get(prefix + ".hop_fraction"));
            float[] audio = Float32Files.readFloats(file(prefix + ".audio"));
            float[][] expected = Float32Files.readRows(file(prefix + ".expected"), windowSamples);
            float[][] windows = Windows.evalWindows(audio, windowSamples, hopFraction);
            assertEquals(prefix + " count", getInt(prefix + ".num_windows"), windows.length);
            assertEquals(prefix + " count", expected.length, windows.length);
            for (int w = 0; w < windows.length; w++) {
                assertArrayEquals(prefix + " window " + w, expected[w], windows[w], 0f);
            }
            int clipSamples = Math.max(audio.length, windowSamples);
            assertArrayEquals(prefix + " starts", getInts(prefix + ".starts"),
                    Windows.windowStarts(clipSamples, windowSamples, hopFraction));
        }
    }

    @Test
    public void clipScoresEqualPythonForEveryAggregation() throws Exception {
        int numClasses = getInt("aggregation.num_classes");
        int numClips = getInt("aggregation.num_clips");
        float[][] scores = Float32Files.readRows(file("aggregation.scores"), numClasses);
        int[] clips = getInts("aggregation.clip_of_window");
        String[] methods = get("aggregation.methods").split(",");
        assertEquals(Aggregation.values().length, methods.length);
        for (String key : methods) {
            double[] expected = Float32Files.readDoubles(file("aggregation." + key));
            double[][] pooled = Aggregation.fromKey(key).aggregate(scores, clips, numClips);
            assertEquals(key, expected.length, numClips * numClasses);
            for (int clip = 0; clip < numClips; clip++) {
                for (int c = 0; c < numClasses; c++) {
                    double want = expected[clip * numClasses + c];
                    // Summation order may differ from numpy's: allow a few ulps.
                    assertEquals(key + " clip " + clip + " class " + c, want, pooled[clip][c],
                            1e-12 * Math.max(1.0, Math.abs(want)));
                }
            }
        }
    }

    @Test
    public void topKEqualsPythonStableOrder() throws Exception {
        int k = getInt("topk.k");
        int rows = getInt("topk.rows");
        float[] flat = Float32Files.readFloats(file("topk.scores"));
        float[][] scores = Float32Files.readRows(file("topk.scores"), flat.length / rows);
        ModelInfo info = readModel();
        int kept = 0;
        for (int r = 0; r < rows; r++) {
            assertArrayEquals("row " + r, getInts("topk." + r), TopK.indices(scores[r], k));
            int[] aboveThreshold = getInts("topk." + r + ".above_threshold");
            List<Category> categories = TopK.categories(scores[r], k, info);
            assertEquals("row " + r, aboveThreshold.length, categories.size());
            for (int i = 0; i < aboveThreshold.length; i++) {
                assertEquals(aboveThreshold[i], categories.get(i).index());
                assertEquals(info.label(aboveThreshold[i]), categories.get(i).label());
                assertEquals(scores[r][aboveThreshold[i]], categories.get(i).score(), 0f);
            }
            kept += aboveThreshold.length;
        }
        // The threshold must both keep and drop something for this check to mean anything.
        assertTrue(kept > 0 && kept < rows * k);
    }

    @Test
    public void modelMetadataEqualsPythonReader() throws Exception {
        ModelInfo info = readModel();
        assertEquals(getInt("model.sample_rate"), info.sampleRate());
        assertEquals(getInt("model.channels"), info.channels());
        assertEquals(getInt("model.input_samples"), info.inputLength());
        assertEquals(getInt("model.input_samples"), info.windowSamples());
        assertEquals(getInt("model.num_classes"), info.numClasses());
        assertEquals(get("model.labels_file"), info.labelsFile());
        assertEquals(get("model.name"), info.name());
        assertEquals(get("model.version"), info.version());
        assertEquals(get("model.min_parser_version"), info.minParserVersion());
        assertEquals(Float.parseFloat(get("model.score_threshold")), info.scoreThreshold(), 0f);
        byte[] labels = Files.readAllBytes(file("model.labels").toPath());
        assertEquals(ModelInfo.parseLabels(labels), info.labels());
        assertEquals(getInt("model.num_labels"), info.labels().size());
    }

    @Test
    public void damagedModelsFailWithModelFormatExceptionOnly() throws Exception {
        byte[] model = Files.readAllBytes(file("model.file").toPath());
        Random random = new Random(1234);
        int parsed = 0;
        for (int trial = 0; trial < 400; trial++) {
            byte[] damaged;
            if (trial % 2 == 0) {
                damaged = new byte[random.nextInt(model.length)];
                System.arraycopy(model, 0, damaged, 0, damaged.length);
            } else {
                damaged = model.clone();
                for (int flips = 0; flips < 4; flips++) {
                    damaged[random.nextInt(damaged.length)] ^= (byte) (1 + random.nextInt(255));
                }
            }
            try {
                ModelInfo.read(ByteBuffer.wrap(damaged));
                parsed++;
            } catch (ModelFormatException expected) {
                // A clean, explained failure.
            } catch (RuntimeException e) {
                throw new AssertionError("trial " + trial + " escaped as " + e, e);
            }
        }
        // Flips inside weights leave the metadata intact: some damaged files still parse.
        assertTrue(parsed > 0);
    }

    /** Class c's score is sample (c * stride) % W of the window (tests/android_golden.py). */
    private WindowClassifier samplingClassifier(final ModelInfo info, final int failAt) {
        final int stride = getInt("eval.score_stride");
        return new WindowClassifier() {
            private int calls;

            @Override
            public int windowSamples() {
                return info.windowSamples();
            }

            @Override
            public int numClasses() {
                return info.numClasses();
            }

            @Override
            public void classify(float[] window, float[] scores) {
                if (calls++ == failAt) {
                    throw new IllegalStateException(FAILURE_MESSAGE);
                }
                for (int c = 0; c < scores.length; c++) {
                    scores[c] = window[(c * stride) % window.length];
                }
            }
        };
    }

    /** Must equal EVAL_FAILURE in tests/android_golden.py. */
    private static final String FAILURE_MESSAGE = "delegate lost: code=7 #1";

    /** Runs the golden windows through the given classifier, as the app's factory would build it. */
    private StandInFactory factoryFailingAt(final int failAt) {
        return new StandInFactory(new StandInFactory.Classifiers() {
            @Override
            public WindowClassifier make(ModelInfo info) {
                return samplingClassifier(info, failAt);
            }
        });
    }

    @Test
    public void evalJobsWriteTheContractFiles() throws Exception {
        // The whole device-side path: job files, the real model's metadata, the factory, the loop.
        StandInFactory factory = factoryFailingAt(-1);
        EvalStatus status = EvalSession.run(file("eval.job"), factory, null);
        assertEquals(status.error, EvalStatus.State.DONE, status.state);
        assertEquals(EvalJob.read(file("eval.job")).numWindows(), status.windowsDone);
        assertEquals(Delegation.Coverage.CPU, status.delegation.coverage());
        assertEquals(Arrays.asList(Accelerator.CPU), factory.closed);

        int failAt = getInt("eval.fail_at");
        EvalStatus failed = EvalSession.run(file("eval.failing_job"), factoryFailingAt(failAt), null);
        assertEquals(EvalStatus.State.ERROR, failed.state);
        assertEquals(failAt, failed.windowsDone);
        // The Python side (tests/test_android_core.py) reads both jobs' files back with the harness.
    }

    /** A copy of the golden job that asks for {@code delegate}, in a folder of its own. */
    private File jobOn(String delegate) throws IOException {
        File source = file("eval.job");
        File copy = temporary.newFolder();
        for (String name : new String[] {EvalJob.MODEL_FILE, EvalJob.WINDOWS_FILE}) {
            Files.copy(new File(source, name).toPath(), new File(copy, name).toPath());
        }
        String properties = new String(Files.readAllBytes(new File(source, EvalJob.JOB_FILE).toPath()),
                StandardCharsets.UTF_8).replace("delegate=cpu", "delegate=" + delegate);
        Files.write(new File(copy, EvalJob.JOB_FILE).toPath(), properties.getBytes(StandardCharsets.UTF_8));
        return copy;
    }

    @Test
    public void aDelegateThatCannotLoadEndsTheJobWithAnErrorStatus() throws Exception {
        Throwable[] failures = {
            new UnsatisfiedLinkError("dlopen failed: library \"libtensorflowlite_gpu_jni.so\" not found"),
            new NoClassDefFoundError("org/tensorflow/lite/gpu/GpuDelegate"),
            new IllegalArgumentException("Internal error: Failed to apply delegate"),
        };
        for (Throwable failure : failures) {
            File job = jobOn("gpu");
            StandInFactory factory = factoryFailingAt(-1).failing(Accelerator.GPU, failure);
            EvalStatus status = EvalSession.run(job, factory, null);
            EvalStatus onDisk = EvalStatus.read(new File(job, EvalJob.STATUS_FILE));
            assertEquals(EvalStatus.State.ERROR, onDisk.state);
            assertEquals("gpu unavailable (" + Failures.describe(failure) + ")", onDisk.error);
            assertEquals(status.error, onDisk.error);
            assertEquals(EvalJob.read(job).numWindows(), onDisk.numWindows);
            // Never a silent CPU run under the "gpu" label.
            assertEquals(Arrays.asList(Accelerator.GPU), factory.attempts);
            assertFalse(new File(job, EvalJob.SCORES_FILE).exists());
        }
    }

    @Test
    public void delegateLatenciesSayHowMuchOfTheGraphTheDelegateTook() throws Exception {
        File unreported = jobOn("gpu");
        EvalSession.run(unreported, factoryFailingAt(-1), null);
        Properties status = properties(new File(unreported, EvalJob.STATUS_FILE));
        assertEquals("done", status.getProperty("state"));
        assertEquals("gpu", status.getProperty("delegate"));
        assertEquals("possibly-partial", status.getProperty("latency_coverage"));
        assertNull(status.getProperty("total_nodes"));

        File reported = jobOn("nnapi");
        EvalSession.run(reported, factoryFailingAt(-1).reporting(Accelerator.NNAPI, 118, 130), null);
        status = properties(new File(reported, EvalJob.STATUS_FILE));
        assertEquals("nnapi", status.getProperty("delegate"));
        assertEquals("partial", status.getProperty("latency_coverage"));
        assertEquals("118", status.getProperty("delegated_nodes"));
        assertEquals("130", status.getProperty("total_nodes"));
        EvalStatus back = EvalStatus.read(new File(reported, EvalJob.STATUS_FILE));
        assertEquals(118, back.delegation.delegatedNodes());
        assertEquals(Delegation.Coverage.PARTIAL, back.delegation.coverage());
    }

    private static Properties properties(File file) throws IOException {
        Properties properties = new Properties();
        try (InputStream in = new FileInputStream(file);
                Reader reader = new InputStreamReader(in, StandardCharsets.UTF_8)) {
            properties.load(reader);
        }
        return properties;
    }
}
