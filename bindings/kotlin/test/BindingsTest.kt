// The Kotlin bindings on the JVM against a real Baton server: sign in, worklist, acknowledge
// while disconnected, reconnect, see another device's change, complete a step with its required
// fields, a refused action as a typed error, an escalation received, and remote wipe.
//
// Run by tests/tests/bindings.rs: `BATON_SERVER_BIN` names the server binary; the suite starts
// `serve --demo` itself. Exits non-zero on the first failure.
import health.baton.Updates
import health.baton.ffi.BatonClient
import health.baton.ffi.BatonException
import health.baton.ffi.Connection
import health.baton.ffi.FieldInput
import health.baton.ffi.FieldValue
import health.baton.ffi.NewTask
import health.baton.ffi.Origin
import health.baton.ffi.Scope
import health.baton.ffi.Settings
import health.baton.ffi.WorklistFilter
import health.baton.statusUpdates
import health.baton.taskChanges
import java.io.File
import java.net.HttpURLConnection
import java.net.ServerSocket
import java.net.URL
import java.nio.file.Files
import kotlinx.coroutines.runBlocking
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

fun main() = runBlocking {
    val binary = System.getenv("BATON_SERVER_BIN") ?: error("BATON_SERVER_BIN must name the server")
    Server(binary).use { server ->
        val nurse = device(server, "rn.evans", "kt-nurse", "nurse")
        val fox = device(server, "dr.fox", "kt-fox", "physician")

        // Sign in and the worklist, by risk.
        val me = nurse.me() ?: error("no one signed in")
        check(me.units.map { it.id to it.roles } == listOf("4W" to listOf("nurse"))) { "units: ${me.units}" }
        val items = nurse.worklist(ALL)
        check(items.map { it.template }.containsAll(listOf("consult", "discharge", "nonformulary_med"))) { "worklist: $items" }
        check(items.map { it.overdue } == items.map { it.overdue }.sortedDescending()) { "overdue first" }

        // The physician acknowledges while disconnected; back online, the nurse sees it.
        val task = nurse.openTask(consult("Bed 31 · K.T.", "routine")).taskId
        nurse.statusUpdates().use { it.within { s -> s.synced } }
        eventually("the consult reaches the physician") { fox.worklist(ALL).any { it.id == task } }
        fox.setSyncUrl("ws://127.0.0.1:9/sync")
        fox.statusUpdates().use { it.within { s -> s.connection != Connection.ONLINE } }
        fox.acknowledge(task)
        check(fox.status().unacknowledged >= 1UL) { "the acknowledgment waits for the server" }
        nurse.taskChanges(task).use { changes ->
            fox.setSyncUrl(server.syncUrl)
            fox.statusUpdates().use { it.within { s -> s.synced } }
            changes.within { c -> c.origin == Origin.REMOTE }
        }
        check(nurse.task(task).acknowledgedBy == "dr.fox") { "the nurse sees the acknowledgment" }

        // A refused action is a typed error naming the rule, step and field.
        try {
            fox.completeStep(task, "request", emptyList())
            error("completing without fields was accepted")
        } catch (refused: BatonException.Refused) {
            check(refused.code == "missing_field" && refused.step == "request") { "refused: ${refused.reason}" }
        }
        try {
            nurse.acknowledge(task)
            error("the nurse acknowledged a physician's consult")
        } catch (refused: BatonException.Refused) {
            check(refused.code == "not_permitted") { "refused: ${refused.code}" }
        }
        val view = fox.task(task)
        check(view.may.any { it.action == "complete_step" && it.step == "request" }) { "may: ${view.may}" }
        fox.completeStep(task, "request", listOf(
            FieldInput("question", FieldValue.Text("Chest pain on exertion?")),
            FieldInput("urgency", FieldValue.Text("urgent")),
        ))
        fox.statusUpdates().use { it.within { s -> s.synced } }
        eventually("the nurse sees the step done") { nurse.task(task).steps[0].completedBy == "dr.fox" }

        // An escalation reaches the phone: a stat consult climbs its chain at once.
        val stat = nurse.openTask(consult("Bed 32 · L.U.", "stat")).taskId
        nurse.taskChanges(stat).use { changes ->
            changes.within { c -> c.origin == Origin.REMOTE }
            eventually("the stat consult escalates") { nurse.task(stat).escalationLevel >= 1u }
        }
        check(nurse.task(stat).history.any { it.kind == "escalated" && it.user == "baton" }) { "no escalation" }

        // Remote wipe.
        val lost = device(server, "rn.evans", "kt-lost", "nurse")
        lost.statusUpdates().use { updates ->
            check(server.post("/api/v1/devices/kt-lost/revoke", server.token("admin", "console", null, null, admin = true)) == 200) { "revoke" }
            updates.within { s -> s.connection == Connection.WIPED }
        }
        try {
            lost.worklist(ALL)
            error("a wiped device still lists work")
        } catch (_: BatonException.Wiped) {
        }
        check(lost.me() == null) { "the wiped device still knows who signed in" }

        for (client in listOf(nurse, fox, lost)) {
            client.shutdown()
            client.close()
        }
        println("kotlin bindings: all checks passed")
    }
}
