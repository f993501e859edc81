import Foundation

/// Whether an application's delivery folder can take files: checked when `local.yaml` loads
/// and by `gatepost site test`, so that a typo in a path is found before the first delivery.
public enum DeliveryFolders {
    /// Why `folder` cannot take deliveries, or nil when it can (it is a writable folder, or
    /// does not exist yet and its nearest existing parent is one gatepost may create it in).
    public static func problem(_ folder: String) -> String? {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) {
            guard isFolder.boolValue else { return "\(folder) is a file, not a folder" }
            return access(folder, W_OK | X_OK) == 0 ? nil : "\(folder) is not writable for this user"
        }
        var parent = (folder as NSString).deletingLastPathComponent
        while !parent.isEmpty, parent != "/", !FileManager.default.fileExists(atPath: parent, isDirectory: &isFolder) {
            parent = (parent as NSString).deletingLastPathComponent
        }
        if parent.isEmpty { parent = "/" }
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isFolder), isFolder.boolValue else {
            return "\(folder) cannot be created: \(parent) is a file"
        }
        return access(parent, W_OK | X_OK) == 0 ? nil : "\(folder) does not exist and cannot be created: \(parent) is not writable for this user"
    }
}
