package dev.lean.core;

import java.util.concurrent.ThreadFactory;

/**
 * Start/stop of a worker that owns exclusive resources (the microphone, an interpreter), driven
 * from the main thread without ever blocking it.
 *
 * <p>At most one worker exists at a time. {@link #stop()} only marks the running session
 * inactive and returns; the worker sees it at its next {@link Session#isActive()} check (between
 * loading the model and opening the microphone, after every read) and releases what it holds on
 * its own thread. A {@link #start} while that worker is still winding down is remembered and
 * runs when it has ended, so a quick pause and resume never has two microphones or two
 * interpreters open. Both calls are idempotent.
 */
public final class SessionLifecycle {
    /** What the lifecycle is doing. */
    public enum State {
        /** No worker. */
        IDLE,
        /** A worker runs an active session. */
        RUNNING,
        /** The worker's session was stopped; it is releasing its resources. */
        STOPPING,
        /** As STOPPING, with a start waiting for that worker to end. */
        RESTART_PENDING
    }

    /** What a worker checks to know whether it is still wanted. */
    public interface Session {
        /** False once stopped: release everything and return. */
        boolean isActive();
    }

    /** The work of one session, run on its own worker thread. */
    public interface Body {
        void run(Session session);
    }

    private final class Run implements Session, Runnable {
        final Body body;
        volatile boolean active = true;

        Run(Body body) {
            this.body = body;
        }

        @Override
        public boolean isActive() {
            return active;
        }

        @Override
        public void run() {
            try {
                body.run(this);
            } finally {
                ended(this);
            }
        }
    }

    private final ThreadFactory threads;
    private Run current;
    private Body pending;

    public SessionLifecycle(ThreadFactory threads) {
        this.threads = threads;
    }

    /**
     * Starts a session running {@code body}, now or once the stopping worker has ended.
     *
     * @return false when a session is already active (nothing changes)
     */
    public synchronized boolean start(Body body) {
        if (current == null) {
            launch(body);
            return true;
        }
        if (current.active) {
            return false;
        }
        pending = body; // the newest start wins
        return true;
    }

    /** Stops the active session and drops a pending start; returns at once. */
    public synchronized void stop() {
        pending = null;
        if (current != null) {
            current.active = false;
        }
    }

    public synchronized State state() {
        if (current == null) {
            return State.IDLE;
        }
        if (current.active) {
            return State.RUNNING;
        }
        return pending == null ? State.STOPPING : State.RESTART_PENDING;
    }

    private void launch(Body body) {
        current = new Run(body);
        threads.newThread(current).start();
    }

    private synchronized void ended(Run run) {
        if (run != current) {
            return;
        }
        current = null;
        if (pending != null) {
            Body next = pending;
            pending = null;
            launch(next);
        }
    }
}
