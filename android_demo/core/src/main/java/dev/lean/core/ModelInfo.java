package dev.lean.core;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/**
 * What an audio classifier needs to know about a .tflite file, read from the file itself.
 *
 * <p>Shapes come from the TFLite flatbuffer (schema.fbs: Model -> subgraphs[0] -> input and output
 * tensors). Sample rate and channels come from the TFLite Model Metadata that our exporter (and
 * MediaPipe's writers) add: the model metadata entry "TFLITE_METADATA" names a buffer holding a
 * ModelMetadata flatbuffer (identifier M001, metadata_schema.fbs) whose first input tensor has
 * AudioProperties content. Labels come from the output tensor's TENSOR_AXIS_LABELS associated file,
 * stored in the zip appended to the model.
 */
public final class ModelInfo {
    public static final String METADATA_NAME = "TFLITE_METADATA";

    // TFLite schema.fbs slots.
    private static final int MODEL_SUBGRAPHS = 2;
    private static final int MODEL_BUFFERS = 4;
    private static final int MODEL_METADATA = 6;
    private static final int BUFFER_DATA = 0;
    private static final int BUFFER_OFFSET = 1;
    private static final int BUFFER_SIZE = 2;
    private static final int METADATA_NAME_SLOT = 0;
    private static final int METADATA_BUFFER = 1;
    private static final int SUBGRAPH_TENSORS = 0;
    private static final int SUBGRAPH_INPUTS = 1;
    private static final int SUBGRAPH_OUTPUTS = 2;
    private static final int TENSOR_SHAPE = 0;
    private static final int TENSOR_TYPE = 1;
    private static final int TENSOR_NAME = 3;
    private static final int TENSOR_TYPE_FLOAT32 = 0;

    // metadata_schema.fbs slots.
    private static final int MODEL_METADATA_NAME = 0;
    private static final int MODEL_METADATA_VERSION = 2;
    private static final int MODEL_METADATA_SUBGRAPHS = 3;
    private static final int MODEL_METADATA_MIN_PARSER = 7;
    private static final int SUBGRAPH_INPUT_METADATA = 2;
    private static final int SUBGRAPH_OUTPUT_METADATA = 3;
    private static final int TENSOR_METADATA_CONTENT = 3;
    private static final int TENSOR_METADATA_PROCESS_UNITS = 4;
    private static final int TENSOR_METADATA_FILES = 6;
    private static final int CONTENT_PROPERTIES_TYPE = 0;
    private static final int CONTENT_PROPERTIES = 1;
    private static final int CONTENT_TYPE_AUDIO_PROPERTIES = 4;
    private static final int AUDIO_SAMPLE_RATE = 0;
    private static final int AUDIO_CHANNELS = 1;
    private static final int PROCESS_UNIT_OPTIONS_TYPE = 0;
    private static final int PROCESS_UNIT_OPTIONS = 1;
    private static final int OPTIONS_TYPE_SCORE_THRESHOLDING = 3;
    private static final int SCORE_THRESHOLD = 0;
    private static final int FILE_NAME = 0;
    private static final int FILE_TYPE = 2;
    private static final int FILE_TYPE_TENSOR_AXIS_LABELS = 2;

    private final String name;
    private final String version;
    private final String minParserVersion;
    private final int sampleRate;
    private final int channels;
    private final int[] inputShape;
    private final int[] outputShape;
    private final String labelsFile;
    private final List<String> labels;
    private final float scoreThreshold;

    private ModelInfo(String name, String version, String minParserVersion, int sampleRate,
            int channels, int[] inputShape, int[] outputShape, String labelsFile,
            List<String> labels, float scoreThreshold) {
        this.name = name;
        this.version = version;
        this.minParserVersion = minParserVersion;
        this.sampleRate = sampleRate;
        this.channels = channels;
        this.inputShape = inputShape;
        this.outputShape = outputShape;
        this.labelsFile = labelsFile;
        this.labels = labels;
        this.scoreThreshold = scoreThreshold;
    }

    /**
     * Reads shapes, audio properties and labels from a whole .tflite file.
     *
     * @param model the file's bytes, from offset 0 (a memory-mapped file works)
     * @return the parsed information
     * @throws ModelFormatException when the file is not a float32 audio classifier with audio
     *     metadata, naming the reason
     */
    public static ModelInfo read(ByteBuffer model) throws ModelFormatException {
        FlatBufferTable root = FlatBufferTable.root(model, "TFL3");
        if (root.vectorLength(MODEL_SUBGRAPHS) == 0) {
            throw new ModelFormatException("the model has no subgraph");
        }
        FlatBufferTable subgraph = root.getTableElement(MODEL_SUBGRAPHS, 0);
        int[] inputShape = tensorShape(subgraph, SUBGRAPH_INPUTS, "input");
        int[] outputShape = tensorShape(subgraph, SUBGRAPH_OUTPUTS, "output");
        checkBatchOfOne(inputShape, "input");
        checkBatchOfOne(outputShape, "output");

        FlatBufferTable metadata = modelMetadata(root, model);
        if (metadata.vectorLength(MODEL_METADATA_SUBGRAPHS) == 0) {
            throw new ModelFormatException("the model metadata describes no subgraph");
        }
        FlatBufferTable subgraphMetadata = metadata.getTableElement(MODEL_METADATA_SUBGRAPHS, 0);
        if (subgraphMetadata.vectorLength(SUBGRAPH_INPUT_METADATA) == 0) {
            throw new ModelFormatException("the model metadata describes no input tensor");
        }
        FlatBufferTable audio = audioProperties(
                subgraphMetadata.getTableElement(SUBGRAPH_INPUT_METADATA, 0));
        long sampleRate = audio.getUint32(AUDIO_SAMPLE_RATE, 0);
        long channels = audio.getUint32(AUDIO_CHANNELS, 0);
        if (sampleRate <= 0 || sampleRate > Integer.MAX_VALUE || channels <= 0
                || channels > Integer.MAX_VALUE) {
            throw new ModelFormatException("invalid AudioProperties: sample_rate=" + sampleRate
                    + ", channels=" + channels);
        }
        int inputLength = inputShape[inputShape.length - 1];
        if (inputLength % channels != 0) {
            throw new ModelFormatException("input length " + inputLength
                    + " is not a multiple of " + channels + " channels");
        }

        String labelsFile = null;
        List<String> labels = Collections.emptyList();
        float scoreThreshold = Float.NaN;
        if (subgraphMetadata.vectorLength(SUBGRAPH_OUTPUT_METADATA) > 0) {
            FlatBufferTable outputMetadata =
                    subgraphMetadata.getTableElement(SUBGRAPH_OUTPUT_METADATA, 0);
            labelsFile = labelsFileName(outputMetadata);
            scoreThreshold = scoreThreshold(outputMetadata);
        }
        if (labelsFile != null) {
            labels = readLabels(model, labelsFile);
            int numClasses = outputShape[outputShape.length - 1];
            if (labels.size() != numClasses) {
                throw new ModelFormatException("labels file " + labelsFile + " has " + labels.size()
                        + " labels but the model outputs " + numClasses + " classes");
            }
        }
        return new ModelInfo(metadata.getString(MODEL_METADATA_NAME),
                metadata.getString(MODEL_METADATA_VERSION),
                metadata.getString(MODEL_METADATA_MIN_PARSER), (int) sampleRate, (int) channels,
                inputShape, outputShape, labelsFile, labels, scoreThreshold);
    }

    /** Splits a labels file: one label per line, UTF-8, trailing empty line ignored. */
    public static List<String> parseLabels(byte[] text) {
        String content = new String(text, StandardCharsets.UTF_8);
        if (content.startsWith("\uFEFF")) {
            content = content.substring(1);
        }
        List<String> labels = new ArrayList<>(Arrays.asList(content.split("\r?\n", -1)));
        if (!labels.isEmpty() && labels.get(labels.size() - 1).isEmpty()) {
            labels.remove(labels.size() - 1);
        }
        return Collections.unmodifiableList(labels);
    }

    private static int[] tensorShape(FlatBufferTable subgraph, int slot, String role)
            throws ModelFormatException {
        if (subgraph.vectorLength(slot) != 1) {
            throw new ModelFormatException("expected one " + role + " tensor, found "
                    + subgraph.vectorLength(slot));
        }
        int index = subgraph.getInt32Element(slot, 0);
        if (index < 0 || index >= subgraph.vectorLength(SUBGRAPH_TENSORS)) {
            throw new ModelFormatException(role + " tensor index " + index + " is out of range");
        }
        FlatBufferTable tensor = subgraph.getTableElement(SUBGRAPH_TENSORS, index);
        int type = tensor.getUint8(TENSOR_TYPE, TENSOR_TYPE_FLOAT32);
        if (type != TENSOR_TYPE_FLOAT32) {
            throw new ModelFormatException(role + " tensor " + tensor.getString(TENSOR_NAME)
                    + " has TFLite type " + type + "; float32 is required");
        }
        int[] shape = new int[tensor.vectorLength(TENSOR_SHAPE)];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = tensor.getInt32Element(TENSOR_SHAPE, i);
        }
        return shape;
    }

    private static void checkBatchOfOne(int[] shape, String role) throws ModelFormatException {
        boolean ok = shape.length >= 1 && shape.length <= 2 && shape[shape.length - 1] > 0
                && (shape.length == 1 || shape[0] == 1);
        if (!ok) {
            throw new ModelFormatException(role + " shape " + Arrays.toString(shape)
                    + " is not [N] or [1, N]");
        }
    }

    private static FlatBufferTable modelMetadata(FlatBufferTable root, ByteBuffer model)
            throws ModelFormatException {
        for (int i = 0; i < root.vectorLength(MODEL_METADATA); i++) {
            FlatBufferTable entry = root.getTableElement(MODEL_METADATA, i);
            if (!METADATA_NAME.equals(entry.getString(METADATA_NAME_SLOT))) {
                continue;
            }
            long bufferIndex = entry.getUint32(METADATA_BUFFER, 0);
            if (bufferIndex >= root.vectorLength(MODEL_BUFFERS)) {
                throw new ModelFormatException("metadata buffer " + bufferIndex + " does not exist");
            }
            return FlatBufferTable.root(
                    bufferBytes(root.getTableElement(MODEL_BUFFERS, (int) bufferIndex), model),
                    "M001");
        }
        throw new ModelFormatException("the model has no TFLite Model Metadata ("
                + METADATA_NAME + "); export it with lean-export");
    }

    /** A buffer's bytes: inline data, or (models over 2 GB) an offset and size into the file. */
    private static ByteBuffer bufferBytes(FlatBufferTable buffer, ByteBuffer model)
            throws ModelFormatException {
        long offset = buffer.getUint64(BUFFER_OFFSET, 0);
        if (offset > 1) {
            long size = buffer.getUint64(BUFFER_SIZE, 0);
            if (size < 0 || offset + size > model.limit()) {
                throw new ModelFormatException("metadata buffer lies outside the file");
            }
            ByteBuffer view = model.duplicate();
            view.position((int) offset);
            view.limit((int) (offset + size));
            return view.slice();
        }
        ByteBuffer data = buffer.getByteVector(BUFFER_DATA);
        if (data == null) {
            throw new ModelFormatException("metadata buffer is empty");
        }
        return data;
    }

    private static FlatBufferTable audioProperties(FlatBufferTable inputMetadata)
            throws ModelFormatException {
        FlatBufferTable content = inputMetadata.getTable(TENSOR_METADATA_CONTENT);
        int type = content == null ? 0 : content.getUint8(CONTENT_PROPERTIES_TYPE, 0);
        FlatBufferTable properties = content == null ? null : content.getTable(CONTENT_PROPERTIES);
        if (type != CONTENT_TYPE_AUDIO_PROPERTIES || properties == null) {
            throw new ModelFormatException(
                    "the input tensor metadata has no AudioProperties (content type " + type + ")");
        }
        return properties;
    }

    private static String labelsFileName(FlatBufferTable outputMetadata)
            throws ModelFormatException {
        for (int i = 0; i < outputMetadata.vectorLength(TENSOR_METADATA_FILES); i++) {
            FlatBufferTable file = outputMetadata.getTableElement(TENSOR_METADATA_FILES, i);
            if (file.getUint8(FILE_TYPE, 0) == FILE_TYPE_TENSOR_AXIS_LABELS) {
                return file.getString(FILE_NAME);
            }
        }
        return null;
    }

    /** The ScoreThresholdingOptions of the output tensor, or NaN when it has none. */
    private static float scoreThreshold(FlatBufferTable outputMetadata)
            throws ModelFormatException {
        for (int i = 0; i < outputMetadata.vectorLength(TENSOR_METADATA_PROCESS_UNITS); i++) {
            FlatBufferTable unit = outputMetadata.getTableElement(TENSOR_METADATA_PROCESS_UNITS, i);
            FlatBufferTable options = unit.getTable(PROCESS_UNIT_OPTIONS);
            if (unit.getUint8(PROCESS_UNIT_OPTIONS_TYPE, 0) == OPTIONS_TYPE_SCORE_THRESHOLDING
                    && options != null) {
                return options.getFloat32(SCORE_THRESHOLD, 0f);
            }
        }
        return Float.NaN;
    }

    private static List<String> readLabels(ByteBuffer model, String labelsFile)
            throws ModelFormatException {
        AppendedZip zip = AppendedZip.find(model);
        byte[] content = zip == null ? null : zip.read(labelsFile);
        if (content == null) {
            throw new ModelFormatException("the metadata names labels file " + labelsFile
                    + " but the model carries no such associated file");
        }
        return parseLabels(content);
    }

    public String name() {
        return name;
    }

    public String version() {
        return version;
    }

    public String minParserVersion() {
        return minParserVersion;
    }

    public int sampleRate() {
        return sampleRate;
    }

    public int channels() {
        return channels;
    }

    /** Samples per inference over all channels (the input tensor's last dimension). */
    public int inputLength() {
        return inputShape[inputShape.length - 1];
    }

    /** Samples per channel in one window. */
    public int windowSamples() {
        return inputLength() / channels;
    }

    public int numClasses() {
        return outputShape[outputShape.length - 1];
    }

    public int[] inputShape() {
        return inputShape.clone();
    }

    public int[] outputShape() {
        return outputShape.clone();
    }

    /** Name of the labels file inside the model, or null when the model has none. */
    public String labelsFile() {
        return labelsFile;
    }

    /** Labels in output order; empty when the model has no labels file. */
    public List<String> labels() {
        return labels;
    }

    /**
     * The output's global score threshold from the metadata (MediaPipe drops categories scoring
     * below it), or NaN when the metadata sets none.
     */
    public float scoreThreshold() {
        return scoreThreshold;
    }

    /** The label of class {@code index}, or "class N" when the model has no labels. */
    public String label(int index) {
        return labels.isEmpty() ? "class " + index : labels.get(index);
    }
}
