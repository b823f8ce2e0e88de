// The app: opens the client with a Keychain-held key (docs/mobile.md) and shows the worklist.
import BatonFFI
import Foundation
import Security
import SwiftUI

@main
struct BatonExampleApp: App {
    let client: BatonClient = {
        let dir = FileManager.default.urls(for: .applicationSupportDirectory, in: .userDomainMask)[0]
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var store = dir.appendingPathComponent("baton.store")
        var values = URLResourceValues()
        values.isExcludedFromBackup = true
        try? store.setResourceValues(values)
        // swiftlint:disable:next force_try
        return try! BatonClient.open(settings: Settings(
            syncUrl: "wss://baton.example.org/sync",
            storePath: store.path,
            storeKey: StoreKey.load()
        ))
    }()

    var body: some Scene {
        WindowGroup { WorklistView(model: WorklistModel(client: client)) }
    }
}

/// The store's 32-byte key, made once and kept in the Keychain, on this device only.
enum StoreKey {
    static func load() -> Data {
        let query: [String: Any] = [
            kSecClass as String: kSecClassGenericPassword,
            kSecAttrService as String: "baton.store-key",
            kSecReturnData as String: true,
        ]
        var item: CFTypeRef?
        if SecItemCopyMatching(query as CFDictionary, &item) == errSecSuccess, let data = item as? Data {
            return data
        }
        var key = Data(count: 32)
        _ = key.withUnsafeMutableBytes { SecRandomCopyBytes(kSecRandomDefault, 32, $0.baseAddress!) }
        let add: [String: Any] = [
            kSecClass as String: kSecClassGenericPassword,
            kSecAttrService as String: "baton.store-key",
            kSecAttrAccessible as String: kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly,
            kSecValueData as String: key,
        ]
        SecItemAdd(add as CFDictionary, nil)
        return key
    }
}
