package dev.lean.core;

/** A problem with an on-device evaluation job; the message is the one line written to status. */
public class EvalException extends Exception {
    private static final long serialVersionUID = 1L;

    public EvalException(String message) {
        super(message);
    }

    public EvalException(String message, Throwable cause) {
        super(message, cause);
    }
}
