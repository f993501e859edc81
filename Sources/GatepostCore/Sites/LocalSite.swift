import Foundation

/// Our own side: who we are, and the Applications that receive files (`sites/local.yaml`).
public struct LocalSite: Sendable, Hashable {
    public struct Application: Sendable, Hashable {
        public var name: String
        /// Where delivered files go (absolute).
        public var folder: String
        /// Program and arguments run after delivery; the delivered file's path is appended and the
        /// transfer's fields are in the environment (`GATEPOST_ID`, `GATEPOST_FILE_NAME`, ...).
        public var command: [String]?
        public var commandTimeout: Duration
        /// The delivered file's name: `${fileName}`, `${site}`, `${id}`, `${date}` (YYYYMMDD),
        /// `${time}` (HHMMSS), `${type}`, `${application}`. Default `${fileName}`.
        public var rename: String?
        /// Attempts in all before a delivery is `failed` (a failing command, a full folder).
        public var attempts: Int = 3
        /// The wait before the second attempt; it doubles for each one after.
        public var retryDelay: Duration = .seconds(60)
    }

    public var name: String
    public var applications: [Application]
    public var sourceFile: String

    public func application(named name: String) -> Application? {
        applications.first { $0.name == name }
    }

    public static let empty = LocalSite(name: "local", applications: [], sourceFile: "")
}

extension SiteLoader {
    func localSite(_ root: ConfigMapping, defaultName: String) throws -> LocalSite {
        try root.rejectUnknownKeys(["kind", "name", "description", "applications"])
        var applications: [LocalSite.Application] = []
        let base = (root.owner.file as NSString).deletingLastPathComponent
        for node in try root["applications"]?.sequence() ?? [] {
            let map = try node.mapping()
            try map.rejectUnknownKeys(["name", "folder", "command", "command_timeout", "rename", "attempts", "retry_delay"])
            let nameNode = try map.require("name")
            let name = try nameNode.nonEmptyString()
            if applications.contains(where: { $0.name == name }) {
                throw nameNode.error("application `\(name)` is defined twice")
            }
            var folder = try map.require("folder").nonEmptyString()
            if !folder.hasPrefix("/") { folder = (base as NSString).appendingPathComponent(folder) }
            var command: [String]?
            if let commandNode = map["command"] {
                let parts = try commandNode.stringList()
                guard !parts.isEmpty else { throw commandNode.error("must name a program") }
                command = parts
            }
            var rename: String?
            if let renameNode = map["rename"] {
                let pattern = try renameNode.rawString()
                if let bad = RenamePattern.unknownVariable(in: pattern) {
                    throw renameNode.error("unknown variable ${\(bad)} (known: \(RenamePattern.variables.joined(separator: ", ")))")
                }
                rename = pattern
            }
            applications.append(LocalSite.Application(
                name: name,
                folder: (folder as NSString).standardizingPath,
                command: command,
                commandTimeout: try map["command_timeout"]?.duration() ?? .seconds(300),
                rename: rename,
                attempts: try map["attempts"]?.int(in: 1...100) ?? 3,
                retryDelay: try map["retry_delay"]?.duration() ?? .seconds(60)
            ))
        }
        return LocalSite(
            name: try root["name"]?.nonEmptyString() ?? defaultName,
            applications: applications,
            sourceFile: root.owner.file
        )
    }
}
