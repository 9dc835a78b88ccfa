package dev.lean.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import org.junit.Test;

public class AcceleratorFallbackTest {
    /** What a GPU or NNAPI delegate really throws when it cannot be set up. */
    private static Throwable[] delegateFailures() {
        return new Throwable[] {
            // CompatibilityList's static initialiser on a device without the GPU JNI library.
            new UnsatisfiedLinkError("dlopen failed: library \"libtensorflowlite_gpu_jni.so\" not found"),
            // The GPU delegate's classes stripped or not packaged.
            new NoClassDefFoundError("org/tensorflow/lite/gpu/GpuDelegateFactory$Options"),
            new ExceptionInInitializerError("GpuDelegate static init"),
            // Interpreter construction when the delegate rejects the graph.
            new IllegalArgumentException("Internal error: Failed to apply delegate"),
            new UnsupportedOperationException("the GPU delegate does not support this device"),
        };
    }

    @Test
    public void liveTaggingFallsBackToXnnpackOnEveryKindOfDelegateFailure() throws Exception {
        for (Accelerator requested : Arrays.asList(Accelerator.GPU, Accelerator.NNAPI)) {
            for (Throwable failure : delegateFailures()) {
                StandInFactory factory = new StandInFactory().failing(requested, failure);
                AcceleratorFallback.Outcome outcome =
                        AcceleratorFallback.create(factory, null, null, requested, 2, true);
                String kind = failure.getClass().getSimpleName();
                assertEquals(kind, Accelerator.XNNPACK, outcome.classifier.delegation().accelerator());
                assertEquals(requested, outcome.requested);
                assertEquals(Arrays.asList(requested, Accelerator.XNNPACK), factory.attempts);
                // The visible message names the delegate, the failure's class and its message.
                assertTrue(outcome.fallbackReason, outcome.fallbackReason.startsWith(
                        requested.key() + " unavailable (" + kind + ": " + failure.getMessage() + ")"));
                assertTrue(outcome.fallbackReason, outcome.fallbackReason.endsWith(
                        "running on the CPU (xnnpack) instead"));
            }
        }
    }

    @Test
    public void evaluationNeverFallsBackAndKeepsTheCause() {
        for (Throwable failure : delegateFailures()) {
            StandInFactory factory = new StandInFactory().failing(Accelerator.GPU, failure);
            try {
                AcceleratorFallback.create(factory, null, null, Accelerator.GPU, 1, false);
                fail("fell back although the evaluation forbids it");
            } catch (AcceleratorException e) {
                assertSame(failure, e.getCause());
                assertEquals("gpu unavailable (" + Failures.describe(failure) + ")", e.getMessage());
                assertEquals(Arrays.asList(Accelerator.GPU), factory.attempts);
            }
        }
    }

    @Test
    public void aWorkingAcceleratorIsUsedAsRequested() throws Exception {
        for (Accelerator requested : Accelerator.values()) {
            StandInFactory factory = new StandInFactory();
            AcceleratorFallback.Outcome outcome =
                    AcceleratorFallback.create(factory, null, null, requested, 1, true);
            assertNull(outcome.fallbackReason);
            assertEquals(requested, outcome.classifier.delegation().accelerator());
            assertEquals(Arrays.asList(requested), factory.attempts);
        }
    }

    @Test
    public void cpuFailuresAndFailedFallbacksAreReportedNotHidden() {
        // Nothing to fall back to from the CPU itself.
        StandInFactory cpu = new StandInFactory().failing(Accelerator.XNNPACK,
                new IllegalStateException("model needs a custom op"));
        try {
            AcceleratorFallback.create(cpu, null, null, Accelerator.XNNPACK, 1, true);
            fail("a failing CPU path must throw");
        } catch (AcceleratorException e) {
            assertEquals("xnnpack unavailable (IllegalStateException: model needs a custom op)",
                    e.getMessage());
        }
        StandInFactory both = new StandInFactory()
                .failing(Accelerator.GPU, new UnsatisfiedLinkError("no gpu jni"))
                .failing(Accelerator.XNNPACK, new IllegalStateException("out of arena"));
        try {
            AcceleratorFallback.create(both, null, null, Accelerator.GPU, 1, true);
            fail("a failing fallback must throw");
        } catch (AcceleratorException e) {
            assertEquals("gpu unavailable (UnsatisfiedLinkError: no gpu jni); the xnnpack fallback"
                    + " failed too (IllegalStateException: out of arena)", e.getMessage());
        }
    }

    @Test
    public void errorsOfTheVirtualMachineItselfAreNotSwallowed() throws Exception {
        OutOfMemoryError outOfMemory = new OutOfMemoryError("Java heap space");
        StandInFactory factory = new StandInFactory().failing(Accelerator.GPU, outOfMemory);
        try {
            AcceleratorFallback.create(factory, null, null, Accelerator.GPU, 1, true);
            fail("an OutOfMemoryError must propagate");
        } catch (OutOfMemoryError e) {
            assertSame(outOfMemory, e);
        }
        assertEquals(Arrays.asList(Accelerator.GPU), factory.attempts);
    }

    @Test
    public void delegationSaysWhetherALatencyIsPurelyTheDelegates() {
        assertEquals(Delegation.Coverage.CPU, Delegation.unreported(Accelerator.CPU).coverage());
        assertEquals(Delegation.Coverage.CPU, Delegation.unreported(Accelerator.XNNPACK).coverage());
        assertEquals(Delegation.Coverage.POSSIBLY_PARTIAL,
                Delegation.unreported(Accelerator.GPU).coverage());
        assertEquals(Delegation.Coverage.PARTIAL,
                Delegation.reported(Accelerator.GPU, 118, 130).coverage());
        assertEquals(Delegation.Coverage.DELEGATE_ALL,
                Delegation.reported(Accelerator.NNAPI, 130, 130).coverage());
        try {
            Delegation.reported(Accelerator.GPU, 131, 130);
            fail("more delegated nodes than nodes");
        } catch (IllegalArgumentException expected) {
            // Rejected.
        }
    }
}
