// Coroutine channels over the client's listeners: what the generated callback interfaces hear,
// as `ReceiveChannel`s an app reads with `receive()` or `for (x in channel)`. Closing an
// `Updates` stops its listener. An app on kotlinx.coroutines 1.4+ turns one into a `Flow` with
// `updates.channel.consumeAsFlow()` (or `callbackFlow`, see docs/mobile.md).
package health.baton

import health.baton.ffi.BatonClient
import health.baton.ffi.Listening
import health.baton.ffi.RefusalListener
import health.baton.ffi.Refused
import health.baton.ffi.StatusListener
import health.baton.ffi.SyncStatus
import health.baton.ffi.TaskChange
import health.baton.ffi.TaskListener
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.channels.ReceiveChannel
import kotlinx.coroutines.runBlocking

/** What one listener hears, until closed. */
class Updates<T> internal constructor(
    private val queue: Channel<T>,
) : AutoCloseable {
    internal var listening: Listening? = null

    /** The updates, oldest first. */
    val channel: ReceiveChannel<T> get() = queue

    /** The next update (suspends until there is one). */
    suspend fun receive(): T = queue.receive()

    /** The first update `done` accepts. */
    suspend fun until(done: (T) -> Boolean): T {
        while (true) {
            val next = queue.receive()
            if (done(next)) return next
        }
    }

    internal fun push(item: T) {
        // The channel is unbounded: sending never waits, whichever thread the listener runs on.
        runBlocking { queue.send(item) }
    }

    override fun close() {
        listening?.let {
            it.stop()
            it.close()
        }
        listening = null
        queue.close()
    }
}

/** The sync status now, then at every change. */
fun BatonClient.statusUpdates(): Updates<SyncStatus> {
    val updates = Updates<SyncStatus>(Channel(Channel.UNLIMITED))
    updates.listening = listenStatus(object : StatusListener {
        override fun onStatus(status: SyncStatus) = updates.push(status)
    })
    return updates
}

/** Every change to a task from now on. */
fun BatonClient.taskChanges(taskId: String): Updates<TaskChange> {
    val updates = Updates<TaskChange>(Channel(Channel.UNLIMITED))
    updates.listening = listenTask(taskId, object : TaskListener {
        override fun onChange(change: TaskChange) = updates.push(change)
    })
    return updates
}

/** Changes of this device's that the server refused, as they are taken out. */
fun BatonClient.refusals(): Updates<Refused> {
    val updates = Updates<Refused>(Channel(Channel.UNLIMITED))
    updates.listening = listenRefusals(object : RefusalListener {
        override fun onRefused(refused: Refused) = updates.push(refused)
    })
    return updates
}
