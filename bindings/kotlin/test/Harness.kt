// What the JVM suites share: a real Baton server they start (`baton-server serve --demo`), tokens
// from its issuer, and waiting with a deadline. Used by BindingsTest.kt and by the Android
// sample's view-model test (mobile-examples/android/model-test).
package health.baton.test

import health.baton.Updates
import health.baton.ffi.BatonClient
import health.baton.ffi.Connection
import health.baton.ffi.NewTask
import health.baton.ffi.Scope
import health.baton.ffi.Settings
import health.baton.ffi.WorklistFilter
import health.baton.statusUpdates
import java.io.File
import java.net.HttpURLConnection
import java.net.ServerSocket
import java.net.URL
import java.nio.file.Files
import kotlinx.coroutines.withTimeout

const val WAIT_MS = 30_000L
val ALL = WorklistFilter(scope = Scope.ALL, unit = null, role = null)

fun check(condition: Boolean, what: () -> String) {
    if (!condition) throw AssertionError(what())
}

class Server(private val binary: String) : AutoCloseable {
    val dataDir: File = Files.createTempDirectory("baton-kotlin").toFile()
    val port = ServerSocket(0).use { it.localPort }
    val syncUrl = "ws://127.0.0.1:$port/sync"
    private val process: Process = ProcessBuilder(
        binary, "serve", "--demo", "--data-dir", dataDir.path,
        "--listen", "127.0.0.1:$port", "--time-scale", "60",
    ).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start()

    init {
        val deadline = System.currentTimeMillis() + 60_000
        while (true) {
            val ready = runCatching {
                val c = URL("http://127.0.0.1:$port/readyz").openConnection() as HttpURLConnection
                c.responseCode == 200
            }.getOrDefault(false)
            if (ready) break
            check(process.isAlive) { "the server exited" }
            check(System.currentTimeMillis() < deadline) { "the server did not become ready" }
            Thread.sleep(100)
        }
    }

    fun token(user: String, device: String, role: String?, unit: String?, admin: Boolean = false): String {
        val args = mutableListOf(binary, "token", "issue", "--data-dir", dataDir.path, "--user", user, "--device", device)
        role?.let { args += listOf("--role", it) }
        unit?.let { args += listOf("--unit", it) }
        if (admin) args += "--admin"
        val p = ProcessBuilder(args).start()
        val out = p.inputStream.bufferedReader().readText().trim()
        check(p.waitFor() == 0) { "token issue failed" }
        return out
    }

    fun post(path: String, token: String): Int {
        val c = URL("http://127.0.0.1:$port$path").openConnection() as HttpURLConnection
        c.requestMethod = "POST"
        c.setRequestProperty("Authorization", "Bearer $token")
        return c.responseCode
    }

    override fun close() {
        process.destroy()
        process.waitFor()
        dataDir.deleteRecursively()
    }
}

suspend fun <T> Updates<T>.within(done: (T) -> Boolean): T = withTimeout(WAIT_MS) { until(done) }

suspend fun eventually(what: String, check: suspend () -> Boolean) {
    val deadline = System.currentTimeMillis() + WAIT_MS
    while (!check()) {
        check(System.currentTimeMillis() < deadline) { "never: $what" }
        Thread.sleep(50)
    }
}

var stores = 0

suspend fun device(server: Server, user: String, id: String, role: String): BatonClient {
    val store = Files.createTempDirectory("store").resolve("device-${stores++}.store").toString()
    val client = BatonClient.open(Settings(server.syncUrl, store, ByteArray(32) { it.toByte() }))
    val me = client.signIn(server.token(user, id, role, "4W"))
    check(me.user == user) { "signed in as ${me.user}" }
    client.statusUpdates().use { it.within { s -> s.connection == Connection.ONLINE } }
    return client
}

fun consult(label: String, acuity: String?) =
    NewTask(template = "consult", unit = "4W", subjectRef = "enc-$label", subjectLabel = label, acuity = acuity, note = null)

