// The client's listeners as AsyncSequences: `for await status in client.statusUpdates()`.
// Ending the loop (or cancelling its task) stops the listener. Add this file to the app target
// beside the generated `BatonFFI.swift`.
import BatonFFI

private final class StatusRelay: StatusListener, @unchecked Sendable {
    let continuation: AsyncStream<SyncStatus>.Continuation
    init(_ continuation: AsyncStream<SyncStatus>.Continuation) { self.continuation = continuation }
    func onStatus(status: SyncStatus) { continuation.yield(status) }
}

private final class TaskRelay: TaskListener, @unchecked Sendable {
    let continuation: AsyncStream<TaskChange>.Continuation
    init(_ continuation: AsyncStream<TaskChange>.Continuation) { self.continuation = continuation }
    func onChange(change: TaskChange) { continuation.yield(change) }
}

extension BatonClient {
    /// The sync status now, then at every change.
    func statusUpdates() -> AsyncStream<SyncStatus> {
        AsyncStream { continuation in
            let handle = listenStatus(listener: StatusRelay(continuation))
            continuation.onTermination = { _ in handle.stop() }
        }
    }

    /// Every change to a task from now on.
    func taskChanges(_ taskId: String) -> AsyncThrowingStream<TaskChange, Error> {
        AsyncThrowingStream { continuation in
            do {
                let relay = AsyncStream<TaskChange>.makeStream()
                let handle = try listenTask(taskId: taskId, listener: TaskRelay(relay.continuation))
                let pump = Task {
                    for await change in relay.stream { continuation.yield(change) }
                }
                continuation.onTermination = { _ in
                    handle.stop()
                    pump.cancel()
                }
            } catch {
                continuation.finish(throwing: error)
            }
        }
    }
}
