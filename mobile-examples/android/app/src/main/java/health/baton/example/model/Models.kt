// The app's view-model layer, in plain Kotlin over the generated bindings: no Android types, so
// it compiles and is tested on the JVM against a real server (mobile-examples/android/
// model-test). The Compose screens (../ui) only render these states and call these methods.
package health.baton.example.model

import health.baton.ffi.BatonClient
import health.baton.ffi.BatonException
import health.baton.ffi.Connection
import health.baton.ffi.FieldDef
import health.baton.ffi.FieldInput
import health.baton.ffi.FieldValue
import health.baton.ffi.Scope
import health.baton.ffi.Step
import health.baton.ffi.SyncStatus
import health.baton.ffi.TaskView
import health.baton.ffi.WorkItem
import health.baton.ffi.WorklistFilter
import health.baton.statusUpdates

/** What the offline banner and the sync indicator show. */
data class SyncBanner(val offline: Boolean, val waiting: ULong, val text: String?) {
    companion object {
        fun of(status: SyncStatus): SyncBanner = SyncBanner(
            offline = status.connection != Connection.ONLINE,
            waiting = status.unacknowledged,
            text = when {
                status.connection == Connection.WIPED -> "This device was signed out and its data removed."
                status.connection == Connection.REFUSED -> "Sign in again: ${status.refusedReason ?: "the server refused the session"}"
                status.connection != Connection.ONLINE && status.unacknowledged > 0UL ->
                    "Offline — ${status.unacknowledged} change(s) saved on this phone, sent when back online"
                status.connection != Connection.ONLINE -> "Offline — showing what this phone holds"
                status.unacknowledged > 0UL -> "Sending ${status.unacknowledged} change(s)…"
                else -> null
            },
        )
    }
}

/** The worklist screen: my work by role and shift, riskiest first. */
class WorklistModel(private val client: BatonClient) {
    data class State(val items: List<WorkItem>, val banner: SyncBanner, val error: String?)

    var scope: Scope = Scope.MY_ROLES
    var unit: String? = null

    suspend fun load(): State = try {
        State(client.worklist(WorklistFilter(scope, unit, null)), SyncBanner.of(client.status()), null)
    } catch (e: BatonException) {
        State(emptyList(), SyncBanner.of(client.status()), reason(e))
    }

    /** Acknowledge from the list; the error to show, or null. */
    suspend fun acknowledge(taskId: String): String? = act { client.acknowledge(taskId) }

    suspend fun claim(taskId: String): String? = act { client.claim(taskId) }

    private suspend fun act(action: suspend () -> Unit): String? = try {
        action()
        null
    } catch (e: BatonException) {
        reason(e)
    }
}

/** The required-field completion form of one step. */
class CompletionForm(val step: Step) {
    private val values = linkedMapOf<String, String>()
    /** Problems by field name, shown under each field. */
    val errors = linkedMapOf<String, String>()

    val fields: List<FieldDef> get() = step.fields

    fun set(field: String, text: String) {
        values[field] = text
        errors.remove(field)
    }

    /** The inputs, each read as its field's kind; null (with [errors] filled) when one is not. */
    fun inputs(): List<FieldInput>? {
        errors.clear()
        val inputs = mutableListOf<FieldInput>()
        for (field in step.fields) {
            val text = values[field.name]?.trim().orEmpty()
            if (text.isEmpty()) {
                if (field.required) errors[field.name] = "Required"
                continue
            }
            val value = when (field.kind) {
                "number" -> text.toDoubleOrNull()?.let { FieldValue.Number(it) }
                "timestamp" -> text.toLongOrNull()?.let { FieldValue.Integer(it) }
                "boolean" -> when (text.lowercase()) {
                    "yes", "true" -> FieldValue.Boolean(true)
                    "no", "false" -> FieldValue.Boolean(false)
                    else -> null
                }
                "choice" -> if (text in field.options) FieldValue.Text(text) else null
                else -> FieldValue.Text(text)
            }
            if (value == null) errors[field.name] = describe(field) else inputs += FieldInput(field.name, value)
        }
        return if (errors.isEmpty()) inputs else null
    }

    private fun describe(field: FieldDef): String = when (field.kind) {
        "number" -> "A number"
        "timestamp" -> "A time"
        "boolean" -> "Yes or no"
        "choice" -> "One of: ${field.options.joinToString()}"
        else -> "Text"
    }
}

/** The task detail screen: state, steps, history, and the actions I may take now. */
class TaskModel(private val client: BatonClient, val taskId: String) {
    var view: TaskView? = null
        private set

    suspend fun load(): TaskView = client.task(taskId).also { view = it }

    /** The actions to offer, as the core says I may take them. */
    fun actions(): List<String> = view?.may?.map { it.action }?.distinct().orEmpty()

    fun form(stepId: String): CompletionForm? =
        view?.steps?.firstOrNull { it.id == stepId }?.let { CompletionForm(it) }

    suspend fun acknowledge(): String? = act { client.acknowledge(taskId) }

    suspend fun handOff(toUser: String, note: String?): String? = act { client.handOff(taskId, toUser, note) }

    suspend fun acceptHandoff(offer: String): String? = act { client.acceptHandoff(taskId, offer) }

    /** Complete a step from its form: field problems go back into the form. */
    suspend fun complete(form: CompletionForm): Boolean {
        val inputs = form.inputs() ?: return false
        return try {
            client.completeStep(taskId, form.step.id, inputs)
            load()
            true
        } catch (refused: BatonException.Refused) {
            form.errors[refused.field ?: "_"] = refused.reason
            false
        } catch (e: BatonException) {
            form.errors["_"] = reason(e)
            false
        }
    }

    private suspend fun act(action: suspend () -> Unit): String? = try {
        action()
        load()
        null
    } catch (e: BatonException) {
        reason(e)
    }
}

/** What to show for an error. */
fun reason(e: BatonException): String = when (e) {
    is BatonException.Refused -> e.reason
    is BatonException.Invalid -> e.reason
    is BatonException.Offline -> "Not on this phone yet, and the server cannot be reached."
    is BatonException.Wiped -> "This device was signed out."
    is BatonException.SignedOut -> "Sign in first."
    else -> e.message ?: "Something went wrong."
}

/** The banner, as the sync status changes. */
suspend fun BatonClient.banners(onBanner: (SyncBanner) -> Unit) {
    statusUpdates().use { updates ->
        while (true) onBanner(SyncBanner.of(updates.receive()))
    }
}
