package dev.lean.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.junit.Test;

public class AppendedZipTest {
    private static final byte[] LABELS = "Bark\nSpeech\nGuitar\n".getBytes(StandardCharsets.UTF_8);

    /** Arbitrary bytes standing for the model, then a zip written by java.util.zip. */
    private static ByteBuffer modelWithZip(byte[] prefix) throws Exception {
        ByteArrayOutputStream zipBytes = new ByteArrayOutputStream();
        try (ZipOutputStream zip = new ZipOutputStream(zipBytes)) {
            ZipEntry stored = new ZipEntry("labels.txt");
            stored.setMethod(ZipEntry.STORED);
            stored.setSize(LABELS.length);
            CRC32 crc = new CRC32();
            crc.update(LABELS);
            stored.setCrc(crc.getValue());
            zip.putNextEntry(stored);
            zip.write(LABELS);
            zip.closeEntry();
            zip.putNextEntry(new ZipEntry("config.json")); // deflated
            byte[] config = new byte[3000];
            Arrays.fill(config, (byte) 'x');
            zip.write(config);
            zip.closeEntry();
        }
        ByteArrayOutputStream file = new ByteArrayOutputStream();
        file.write(prefix);
        file.write(zipBytes.toByteArray());
        return ByteBuffer.wrap(file.toByteArray());
    }

    @Test
    public void readsStoredAndDeflatedEntriesAfterAPrefix() throws Exception {
        byte[] prefix = new byte[1234];
        for (int i = 0; i < prefix.length; i++) {
            prefix[i] = (byte) (i * 31); // includes 'P' 'K' bytes by chance
        }
        AppendedZip zip = AppendedZip.find(modelWithZip(prefix));
        List<String> names = zip.names();
        assertEquals(Arrays.asList("labels.txt", "config.json"), names);
        assertArrayEquals(LABELS, zip.read("labels.txt"));
        assertEquals(3000, zip.read("config.json").length);
        assertNull(zip.read("missing.txt"));
        assertEquals(Arrays.asList("Bark", "Speech", "Guitar"), ModelInfo.parseLabels(LABELS));
    }

    @Test
    public void fileWithoutZipHasNone() throws Exception {
        assertNull(AppendedZip.find(ByteBuffer.wrap(new byte[100])));
        assertNull(AppendedZip.find(ByteBuffer.wrap(new byte[3])));
    }

    @Test(expected = ModelFormatException.class)
    public void corruptEntryFailsItsCrc() throws Exception {
        ByteBuffer file = modelWithZip(new byte[10]);
        byte[] bytes = file.array();
        // Flip a byte of the stored labels: the first local header starts at byte 10.
        int data = 10 + 30 + "labels.txt".length();
        bytes[data] ^= 1;
        AppendedZip.find(ByteBuffer.wrap(bytes)).read("labels.txt");
    }

    @Test
    public void labelsToleratesCrLfBomAndMissingFinalNewline() {
        byte[] text = "\uFEFFa\r\nb c\nd".getBytes(StandardCharsets.UTF_8);
        assertEquals(Arrays.asList("a", "b c", "d"), ModelInfo.parseLabels(text));
    }
}
