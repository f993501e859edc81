import Foundation
import GatepostCatalog

/// `gatepost catalog purge`: removes the spool files of transfers that are done with and older
/// than a cutoff. Only files inside the spool go (a transfer's files in `in/`, its messages in
/// `out/`); what was delivered to applications is theirs. The catalog rows stay, marked purged:
/// the audit trail, and the UIDLs that keep messages left on a server from being fetched again.
public struct SpoolPurge: Sendable {
    public var spool: Spool
    public var catalog: any Catalog

    public init(spool: Spool, catalog: any Catalog) {
        self.spool = spool
        self.catalog = catalog
    }

    public struct Summary: Sendable {
        public var transfers = 0
        public var files = 0
        public var bytes: Int64 = 0
        /// Each transfer purged (or, in a dry run, that would be), with its files and bytes.
        public var purged: [(id: String, files: Int, bytes: Int64)] = []
    }

    public func run(before cutoff: Date, site: String? = nil, dryRun: Bool = false, now: Date = Date()) async throws -> Summary {
        var summary = Summary()
        // A file is counted once, under the first transfer that names it, in a dry run as in a
        // purge (where it is gone for the next one): the dry run says exactly what the purge does.
        var counted = Set<String>()
        for record in try await catalog.transfers(TransferFilter(site: site, before: cutoff, purged: false)) {
            let outbox = try await catalog.outbox(transferId: record.id)
            guard PurgeRules.isPurgeable(record, before: cutoff, outbox: outbox) else { continue }
            var paths: [String] = []
            if record.direction == .inbound {
                // The main file and its companions; and the folder a transfer had in older spools.
                let main = spool.transferPath(site: record.site, id: record.id)
                paths += [main, main + ".txt", main + ".html"]
                // A MSG's inline resources, numbered from 1.
                var number = 1
                while FileManager.default.fileExists(atPath: main + ".inline-\(number)") {
                    paths.append(main + ".inline-\(number)")
                    number += 1
                }
            }
            paths += outbox.map(\.path)
            if let path = record.path { paths.append(path) }
            // Nothing outside this spool's in/ and out/ is ever removed.
            let owned = Set(paths.filter { Self.isInside($0, spool.inboundRoot) || Self.isInside($0, spool.outboundRoot) })
                .map { ($0 as NSString).standardizingPath }
            var transferFiles = 0
            var transferBytes: Int64 = 0
            for path in Set(owned).sorted() where !counted.contains(path) {
                counted.insert(path)
                let (files, bytes) = Self.measure(path)
                guard files > 0 else { continue }
                transferFiles += files
                transferBytes += bytes
                if !dryRun { try? FileManager.default.removeItem(atPath: path) }
            }
            summary.files += transferFiles
            summary.bytes += transferBytes
            summary.purged.append((record.id, transferFiles, transferBytes))
            summary.transfers += 1
            if !dryRun { try await catalog.markPurged(id: record.id, at: now) }
        }
        return summary
    }

    static func isInside(_ path: String, _ folder: String) -> Bool {
        let standardized = (path as NSString).standardizingPath
        return standardized.hasPrefix(folder + "/") && !standardized.contains("/../")
    }

    /// Files and bytes at `path` (a file, or a folder one level deep, as transfer folders are).
    static func measure(_ path: String) -> (files: Int, bytes: Int64) {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { return (0, 0) }
        let files = isFolder.boolValue ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).map { path + "/" + $0 } : [path]
        let bytes = files.reduce(Int64(0)) { total, file in
            total + ((try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int64) ?? 0)
        }
        return (max(files.count, 1), bytes)
    }
}
