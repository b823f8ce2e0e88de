// The Kotlin bindings on the JVM against a real Baton server: sign in, worklist, acknowledge
// while disconnected, reconnect, see another device's change, complete a step with its required
// fields, a refused action as a typed error, an escalation received, and remote wipe.
//
// Run by tests/tests/bindings.rs: `BATON_SERVER_BIN` names the server binary; the suite starts
// `serve --demo` itself. Exits non-zero on the first failure.
import health.baton.ffi.BatonException
import health.baton.ffi.Connection
import health.baton.ffi.FieldInput
import health.baton.ffi.FieldValue
import health.baton.ffi.Origin
import health.baton.statusUpdates
import health.baton.taskChanges
import health.baton.test.ALL
import health.baton.test.Server
import health.baton.test.check
import health.baton.test.consult
import health.baton.test.device
import health.baton.test.eventually
import health.baton.test.within
import kotlinx.coroutines.runBlocking

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
