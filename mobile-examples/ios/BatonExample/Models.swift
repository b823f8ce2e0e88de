// The screens' state, over the generated Swift API. Kept apart from the views so they stay thin.
import BatonFFI
import Foundation
import Observation

@MainActor @Observable
final class WorklistModel {
    let client: BatonClient
    var items: [WorkItem] = []
    var scope: Scope = .myRoles
    var status: SyncStatus
    var error: String?

    init(client: BatonClient) {
        self.client = client
        self.status = client.status()
    }

    var offlineBanner: String? {
        switch status.connection {
        case .online: return status.unacknowledged > 0 ? "Sending \(status.unacknowledged) change(s)…" : nil
        case .wiped: return "This device was signed out and its data removed."
        case .refused: return "Sign in again."
        default:
            return status.unacknowledged > 0
                ? "Offline — \(status.unacknowledged) change(s) saved on this phone"
                : "Offline — showing what this phone holds"
        }
    }

    func load() async {
        do {
            items = try await client.worklist(filter: WorklistFilter(scope: scope, unit: nil, role: nil))
            error = nil
        } catch let e as BatonError {
            error = e.reasonToShow
        } catch {
            self.error = error.localizedDescription
        }
    }

    /// Follow the sync status, reloading as it changes.
    func follow() async {
        for await status in client.statusUpdates() {
            self.status = status
            await load()
        }
    }

    func acknowledge(_ item: WorkItem) async {
        do {
            _ = try await client.acknowledge(taskId: item.id)
            await load()
        } catch let e as BatonError {
            error = e.reasonToShow
        } catch {
            self.error = error.localizedDescription
        }
    }
}

@MainActor @Observable
final class TaskModel {
    let client: BatonClient
    let taskId: String
    var view: TaskView?
    var error: String?
    /// The completion form's values and problems, by field name.
    var values: [String: String] = [:]
    var fieldErrors: [String: String] = [:]

    init(client: BatonClient, taskId: String) {
        self.client = client
        self.taskId = taskId
    }

    func load() async {
        do { view = try await client.task(taskId: taskId) } catch { self.error = "\(error)" }
    }

    func may(_ action: String, step: String? = nil) -> Bool {
        view?.may.contains { $0.action == action && (step == nil || $0.step == step) } ?? false
    }

    func run(_ action: () async throws -> ActionResult) async {
        do {
            _ = try await action()
            error = nil
            await load()
        } catch let e as BatonError {
            error = e.reasonToShow
        } catch {
            self.error = error.localizedDescription
        }
    }

    /// Complete `step` from the form; a refusal that names a field is shown under it.
    func complete(_ step: Step) async {
        fieldErrors = [:]
        var inputs: [FieldInput] = []
        for field in step.fields {
            let text = values[field.name, default: ""].trimmingCharacters(in: .whitespaces)
            if text.isEmpty {
                if field.required { fieldErrors[field.name] = "Required" }
                continue
            }
            switch field.kind {
            case "number":
                guard let n = Double(text) else { fieldErrors[field.name] = "A number"; continue }
                inputs.append(FieldInput(name: field.name, value: .number(value: n)))
            case "timestamp":
                guard let t = Int64(text) else { fieldErrors[field.name] = "A time"; continue }
                inputs.append(FieldInput(name: field.name, value: .integer(value: t)))
            case "boolean":
                inputs.append(FieldInput(name: field.name, value: .boolean(value: ["yes", "true"].contains(text.lowercased()))))
            default:
                inputs.append(FieldInput(name: field.name, value: .text(value: text)))
            }
        }
        guard fieldErrors.isEmpty else { return }
        do {
            _ = try await client.completeStep(taskId: taskId, step: step.id, fields: inputs)
            await load()
        } catch let BatonError.Refused(_, reason, _, field) {
            fieldErrors[field ?? "_"] = reason
        } catch {
            self.error = "\(error)"
        }
    }
}

extension BatonError {
    /// What to show for the error.
    var reasonToShow: String {
        switch self {
        case let .Refused(_, reason, _, _), let .Invalid(_, reason): return reason
        case .Offline: return "Not on this phone yet, and the server cannot be reached."
        case .Wiped: return "This device was signed out."
        case .SignedOut: return "Sign in first."
        default: return "\(self)"
        }
    }
}
