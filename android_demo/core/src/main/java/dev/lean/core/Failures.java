package dev.lean.core;

/** One-line descriptions of failures, for the screen and for status.properties. */
public final class Failures {
    private Failures() {
    }

    /** "UnsatisfiedLinkError: dlopen failed ..." (the class name tells an Error from an Exception). */
    public static String describe(Throwable failure) {
        String message = failure.getMessage();
        String name = failure.getClass().getSimpleName();
        if (name.isEmpty()) {
            name = failure.getClass().getName();
        }
        return message == null || message.trim().isEmpty() ? name : name + ": " + message;
    }

    /**
     * True for the failures a runtime's set-up or run can really throw and the app must answer:
     * every {@link Exception}, and the {@link LinkageError}s of a missing native library or class.
     * Errors of the virtual machine itself (out of memory, stack overflow) are not answered here.
     */
    public static boolean isRecoverable(Throwable failure) {
        return failure instanceof Exception || failure instanceof LinkageError;
    }
}
