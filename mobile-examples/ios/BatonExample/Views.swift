// The screens: the worklist by role and shift, the task with its history, acknowledge, the
// required-field completion form, hand-off, an offline banner and the sync status.
import BatonFFI
import SwiftUI

struct Banner: View {
    let text: String?
    var body: some View {
        if let text {
            Text(text).font(.callout).padding(8).frame(maxWidth: .infinity).background(.yellow.opacity(0.3))
        }
    }
}

struct WorklistView: View {
    @State var model: WorklistModel

    var body: some View {
        NavigationStack {
            VStack(spacing: 0) {
                Banner(text: model.offlineBanner)
                Picker("Show", selection: $model.scope) {
                    Text("My roles").tag(Scope.myRoles)
                    Text("Mine").tag(Scope.mine)
                    Text("Unowned").tag(Scope.unowned)
                    Text("All").tag(Scope.all)
                }
                .pickerStyle(.segmented)
                .onChange(of: model.scope) { Task { await model.load() } }
                List(model.items, id: \.id) { item in
                    NavigationLink(value: item.id) {
                        VStack(alignment: .leading) {
                            Text("\(item.label) · \(item.name)").font(.headline)
                            HStack {
                                Text(item.acuity)
                                Text(item.owner ?? "unowned")
                                if item.overdue { Text("OVERDUE").foregroundStyle(.red) }
                                if item.escalationLevel > 0 { Text("Escalated to \(item.escalatedTo ?? "")") }
                                if item.waiting { Text("Waiting") }
                            }
                            .font(.caption)
                        }
                    }
                    .swipeActions {
                        if item.mine && !item.acknowledged {
                            Button("Acknowledge") { Task { await model.acknowledge(item) } }
                        }
                    }
                }
                if let error = model.error { Text(error).foregroundStyle(.red) }
            }
            .navigationTitle("Worklist")
            .navigationDestination(for: String.self) { id in
                TaskDetailView(model: TaskModel(client: model.client, taskId: id))
            }
            .task { await model.follow() }
        }
    }
}

struct TaskDetailView: View {
    @State var model: TaskModel
    @State var handOffTo = ""

    var body: some View {
        Form {
            if let view = model.view {
                Section(view.name) {
                    Text(view.label).font(.headline)
                    Text("\(view.status) · owner \(view.owner ?? "nobody") · \(view.acuity)")
                    if model.may("acknowledge") {
                        Button("Acknowledge") { Task { await model.run { try await model.client.acknowledge(taskId: view.id) } } }
                    }
                }
                Section("Steps") {
                    ForEach(view.steps, id: \.id) { step in
                        VStack(alignment: .leading) {
                            Text("\(step.name) — \(step.status)")
                            if model.may("complete_step", step: step.id) {
                                ForEach(step.fields, id: \.name) { field in
                                    TextField(field.name + (field.required ? " *" : ""), text: Binding(
                                        get: { model.values[field.name, default: ""] },
                                        set: { model.values[field.name] = $0 }
                                    ))
                                    if let problem = model.fieldErrors[field.name] {
                                        Text(problem).font(.caption).foregroundStyle(.red)
                                    }
                                }
                                Button("Complete") { Task { await model.complete(step) } }
                            }
                        }
                    }
                }
                if model.may("hand_off") {
                    Section("Hand off") {
                        TextField("To (user id)", text: $handOffTo)
                        Button("Offer") {
                            Task { await model.run { try await model.client.handOff(taskId: view.id, toUser: handOffTo, note: nil) } }
                        }
                    }
                }
                Section("History") {
                    ForEach(view.history, id: \.event) { h in
                        Text("\(h.kind) · \(h.user) (\(h.role)) · \(h.outcome)").font(.caption)
                    }
                    ForEach(view.conflicts, id: \.event) { c in
                        Text("Conflict: \(c.kind) by \(c.user): \(c.reason)").font(.caption).foregroundStyle(.orange)
                    }
                }
            }
            if let error = model.error { Text(error).foregroundStyle(.red) }
        }
        .task { await model.load() }
    }
}
