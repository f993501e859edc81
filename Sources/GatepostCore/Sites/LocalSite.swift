import Foundation

/// Our own side: who we are, and the Applications that receive files (`sites/local.yaml`).
public struct LocalSite: Sendable, Hashable {
    public struct Application: Sendable, Hashable {
        public var name: String
        /// Where delivered files go (absolute).
        public var folder: String
        /// Program and arguments run after delivery; the delivered file's path is appended and the
        /// transfer's fields are in the environment (`GATEPOST_ID`, `GATEPOST_FILE_NAME`, ...) and
        /// may be named in the arguments (`${GATEPOST_FILE_NAME}`, expanded at delivery).
        public var command: [String]?
        /// Variables the command gets besides the allowlist and the `GATEPOST_*` fields
        /// (``CommandEnvironment``).
        public var environment: [String: String] = [:]
        public var commandTimeout: Duration
        /// The delivered file's name: `${fileName}`, `${site}`, `${id}`, `${date}` (YYYYMMDD),
        /// `${time}` (HHMMSS), `${type}`, `${application}`. Default `${fileName}`.
        public var rename: String?
        /// Attempts in all before a delivery is `failed` (a failing command, a full folder).
        public var attempts: Int = 3
        /// The wait before the second attempt; it doubles for each one after.
        public var retryDelay: Duration = .seconds(60)
        /// Permissions of delivered files (`file_mode`, default 0640: the owner and the group
        /// read them), whatever gatepost's own umask (077) is.
        public var fileMode: UInt32 = 0o640
        /// Permissions of the delivery folder when gatepost creates it (`folder_mode`, 0750).
        public var folderMode: UInt32 = 0o750
        /// The group delivered files and created folders get (`group`), e.g. the application's
        /// service account's; nil keeps gatepost's.
        public var group: UInt32? = nil
        public var groupName: String? = nil
    }

    public var name: String
    public var applications: [Application]
    public var sourceFile: String
    /// `alerts:`: thresholds, channels and routes of the alerts.
    public var alerts = AlertSettings.defaults

    public func application(named name: String) -> Application? {
        applications.first { $0.name == name }
    }

    public static let empty = LocalSite(name: "local", applications: [], sourceFile: "")
}

extension SiteLoader {
    func localSite(_ root: ConfigMapping, defaultName: String) throws -> LocalSite {
        try root.rejectUnknownKeys(["kind", "name", "description", "applications", "alerts"])
        var applications: [LocalSite.Application] = []
        // Absolute, so that commands get absolute paths whatever gatepost's working folder.
        let base = URL(fileURLWithPath: (root.owner.file as NSString).deletingLastPathComponent).standardizedFileURL.path
        for node in try root["applications"]?.sequence() ?? [] {
            let map = try node.mapping()
            try map.rejectUnknownKeys([
                "name", "folder", "command", "command_timeout", "environment", "rename", "attempts", "retry_delay",
                "file_mode", "folder_mode", "group",
            ])
            let nameNode = try map.require("name")
            let name = try nameNode.nonEmptyString()
            if applications.contains(where: { $0.name == name }) {
                throw nameNode.error("application `\(name)` is defined twice")
            }
            let folderNode = try map.require("folder")
            var folder = try folderNode.nonEmptyString()
            if !folder.hasPrefix("/") { folder = (base as NSString).appendingPathComponent(folder) }
            if let problem = DeliveryFolders.problem((folder as NSString).standardizingPath) {
                throw folderNode.error(problem)
            }
            var command: [String]?
            if let commandNode = map["command"] {
                // A list, each item one argument as written: a single string is refused rather
                // than split (at commas or spaces) in a way nobody expects.
                guard case .sequence = commandNode.node else {
                    throw commandNode.error("must be a list of the program and its arguments, such as [/usr/local/bin/import, --queue, orders]; for a shell command line write [/bin/sh, -c, \"...\"]")
                }
                let items = try commandNode.sequence()
                guard !items.isEmpty else { throw commandNode.error("must name a program") }
                command = try items.map { item in
                    let argument = try item.substitute(item.rawString(), leaving: { $0.hasPrefix("GATEPOST_") })
                    if let unknown = CommandEnvironment.unknownField(in: argument) {
                        throw item.error("unknown variable ${\(unknown)} (the transfer's fields: \(CommandEnvironment.fieldNames.joined(separator: ", ")))")
                    }
                    return argument
                }
            }
            var environment: [String: String] = [:]
            if let environmentNode = map["environment"] {
                for (key, value) in try environmentNode.mapping().entries {
                    guard !key.isEmpty, key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }), !key.hasPrefix("GATEPOST_") else {
                        throw value.error("`\(key)` cannot be set (a variable name of letters, digits and _, not GATEPOST_*)")
                    }
                    environment[key] = try value.string()
                }
            }
            var rename: String?
            if let renameNode = map["rename"] {
                let pattern = try renameNode.rawString()
                if let bad = RenamePattern.unknownVariable(in: pattern) {
                    throw renameNode.error("unknown variable ${\(bad)} (known: \(RenamePattern.variables.joined(separator: ", ")))")
                }
                rename = pattern
            }
            var modes: (file: UInt32, folder: UInt32) = (0o640, 0o750)
            for (key, keyPath) in [("file_mode", \(file: UInt32, folder: UInt32).file), ("folder_mode", \.folder)] {
                guard let node = map[key] else { continue }
                let text = try node.rawString()
                guard (3...4).contains(text.count), let mode = UInt32(text, radix: 8), mode <= 0o777 else {
                    throw node.error("must be an octal mode such as 0640 (in quotes)")
                }
                modes[keyPath: keyPath] = mode
            }
            var group: (id: UInt32, name: String)?
            if let groupNode = map["group"] {
                let name = try groupNode.nonEmptyString()
                guard let entry = getgrnam(name) else { throw groupNode.error("no group `\(name)` on this system") }
                group = (entry.pointee.gr_gid, name)
            }
            applications.append(LocalSite.Application(
                name: name,
                folder: (folder as NSString).standardizingPath,
                command: command,
                environment: environment,
                commandTimeout: try map["command_timeout"]?.duration() ?? .seconds(300),
                rename: rename,
                attempts: try map["attempts"]?.int(in: 1...100) ?? 3,
                retryDelay: try map["retry_delay"]?.duration() ?? .seconds(60),
                fileMode: modes.file,
                folderMode: modes.folder,
                group: group?.id,
                groupName: group?.name
            ))
        }
        var local = LocalSite(
            name: try root["name"]?.nonEmptyString() ?? defaultName,
            applications: applications,
            sourceFile: root.owner.file
        )
        local.alerts = try alertSettings(root["alerts"])
        return local
    }
}
