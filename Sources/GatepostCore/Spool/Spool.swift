import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The spool folder: `tmp/` for messages being received, `in/<site>/<transfer id>/` for kept
/// files, and the catalog database. Everything is created owner-only.
///
/// The crash-safety rule: files are written in `tmp/<id>/`, fsynced, and the folder is renamed
/// into `in/` (then the parent folder fsynced) before the catalog row is committed. Whatever a
/// crash leaves in `tmp/` is swept at the next start; the message is still on the server.
public struct Spool: Sendable {
    public let root: String

    public var temporaryRoot: String { root + "/tmp" }
    public var inboundRoot: String { root + "/in" }
    /// Outgoing messages (acknowledgments, outbound files) waiting in the outbox.
    public var outboundRoot: String { root + "/out" }
    public var catalogPath: String { root + "/catalog.sqlite" }

    public init(root: String) throws(SpoolError) {
        self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
        for directory in [self.root, temporaryRoot, inboundRoot, outboundRoot] {
            try Self.makeDirectory(directory)
        }
    }

    /// Creates the folder if missing; returns whether it was created.
    @discardableResult
    static func makeDirectory(_ path: String) throws(SpoolError) -> Bool {
        if mkdir(path, 0o700) != 0 {
            let code = errno
            guard code == EEXIST else { throw SpoolError("create the folder", path: path, errno: code) }
            return false
        }
        return true
    }

    /// Writes an outgoing message into `out/NAME` durably (file and folder fsynced) before the
    /// outbox row that names it is committed. `write` is handed a function that appends bytes.
    /// Returns the path and the message's SHA-256.
    public func writeOutgoing(
        name: String, _ write: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws -> (path: String, size: Int64, sha256: String) {
        let path = outboundRoot + "/" + name
        let writer = try SpoolFileWriter(path: path)
        do {
            try write { bytes in try writer.write(bytes) }
            let (size, sha256) = try writer.finish()
            try Self.fsyncPath(path, directory: false)
            try Self.fsyncPath(outboundRoot, directory: true)
            return (path, size, sha256)
        } catch {
            unlink(path)
            throw error
        }
    }

    /// Removes messages in `out/` that no outbox entry names: written by a process that died
    /// before its commit. Only files older than `minimumAge`, so that a `gatepost send` in
    /// progress (file written, commit not yet) is left alone. Returns how many were removed.
    @discardableResult
    public func sweepOrphanedOutgoing(minimumAge: TimeInterval = 3600, isReferenced: (String) async throws -> Bool) async throws -> Int {
        var removed = 0
        let cutoff = Date().addingTimeInterval(-minimumAge)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: outboundRoot)) ?? [] {
            let path = outboundRoot + "/" + name
            guard let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date,
                  modified < cutoff, try await !isReferenced(path)
            else { continue }
            if unlink(path) == 0 { removed += 1 }
        }
        return removed
    }

    /// Removes what interrupted polls left in `tmp/`. Returns how many entries were removed.
    @discardableResult
    public func sweepTemporary() -> Int {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: temporaryRoot)) ?? []
        for entry in entries {
            try? FileManager.default.removeItem(atPath: temporaryRoot + "/" + entry)
        }
        return entries.count
    }

    /// A private folder in `tmp/` for one message.
    func makeWorkspace(id: String) throws(SpoolError) -> String {
        let path = temporaryRoot + "/" + id
        if mkdir(path, 0o700) != 0 { throw SpoolError("create the folder", path: path, errno: errno) }
        return path
    }

    /// Where a transfer's files wait between their fsync and the commit (`in/<site>/.<id>`).
    func pendingFolder(site: String, id: String) -> String {
        inboundRoot + "/" + site + "/." + id
    }

    /// The folder a committed transfer's files live in.
    public func transferFolder(site: String, id: String) -> String {
        inboundRoot + "/" + site + "/" + id
    }

    /// Makes the kept files durable and moves the workspace to `in/<site>/.<id>/` (pending: not
    /// yet in the catalog); ``publish(site:id:)`` gives it its final name once the record is
    /// committed. Returns the final folder's path.
    ///
    /// Why two steps: a crash between the move and the commit leaves a hidden pending folder
    /// that ``recoverPending(isCommitted:)`` removes (the message is still on the server); a
    /// crash between the commit and the publish leaves one it publishes. Only pending folders
    /// are ever examined at start, never the whole spool.
    /// Makes a batch of received workspaces durable and moves each to `in/<site>/.<id>/`: every
    /// kept file and every workspace fsynced first, the renames next, then the site folder fsynced
    /// once for all. Batching turns one journal commit per file into one per batch, which is
    /// most of the cost of a small message. Returns each transfer's final folder, in order.
    func commitWorkspaces(_ batch: [(workspace: String, keeping: [String], id: String)], site: String) throws(SpoolError) -> [String] {
        for item in batch {
            for file in item.keeping {
                try Self.fsyncPath(item.workspace + "/" + file, directory: false)
            }
            try Self.fsyncPath(item.workspace, directory: true)
        }
        let siteFolder = inboundRoot + "/" + site
        if try Self.makeDirectory(siteFolder) {
            try Self.fsyncPath(inboundRoot, directory: true)
        }
        for item in batch {
            let pending = siteFolder + "/." + item.id
            if rename(item.workspace, pending) != 0 {
                throw SpoolError("move the received files to", path: pending, errno: errno)
            }
        }
        // The moves must be durable before the catalog says "committed": otherwise a crash
        // could leave a record whose files are swept from tmp/.
        try Self.fsyncPath(siteFolder, directory: true)
        return batch.map { transferFolder(site: site, id: $0.id) }
    }

    func commitWorkspace(_ workspace: String, keeping files: [String], site: String, id: String) throws(SpoolError) -> String {
        for file in files {
            try Self.fsyncPath(workspace + "/" + file, directory: false)
        }
        try Self.fsyncPath(workspace, directory: true)
        let siteFolder = inboundRoot + "/" + site
        if try Self.makeDirectory(siteFolder) {
            try Self.fsyncPath(inboundRoot, directory: true)
        }
        let pending = siteFolder + "/." + id
        if rename(workspace, pending) != 0 {
            throw SpoolError("move the received files to", path: pending, errno: errno)
        }
        // The move must be durable before the catalog says "committed": otherwise a crash
        // could leave a record whose files are swept from tmp/.
        try Self.fsyncPath(siteFolder, directory: true)
        return transferFolder(site: site, id: id)
    }

    /// Gives a committed transfer's pending folder its final name. Not fsynced on purpose: if
    /// a crash loses the rename, the next start publishes the pending folder again.
    func publish(site: String, id: String) throws(SpoolError) {
        let siteFolder = inboundRoot + "/" + site
        let final = siteFolder + "/" + id
        if rename(siteFolder + "/." + id, final) != 0 {
            throw SpoolError("publish the received files to", path: final, errno: errno)
        }
    }

    /// Settles what a crash left between receiving and publishing: pending folders whose
    /// transfer is committed are published, the others removed. Returns (published, removed).
    @discardableResult
    public func recoverPending(isCommitted: (String) async throws -> Bool) async throws -> (published: Int, removed: Int) {
        var published = 0
        var removed = 0
        let sites = (try? FileManager.default.contentsOfDirectory(atPath: inboundRoot)) ?? []
        for site in sites where !site.hasPrefix(".") {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: inboundRoot + "/" + site)) ?? []
            for entry in entries where entry.hasPrefix(".") && entry.count > 1 {
                let id = String(entry.dropFirst())
                if try await isCommitted(id) {
                    try publish(site: site, id: id)
                    published += 1
                } else {
                    try? FileManager.default.removeItem(atPath: inboundRoot + "/" + site + "/" + entry)
                    removed += 1
                }
            }
        }
        return (published, removed)
    }

    static func fsyncPath(_ path: String, directory: Bool) throws(SpoolError) {
        let descriptor = open(path, (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC)
        guard descriptor >= 0 else { throw SpoolError("open", path: path, errno: errno) }
        defer { close(descriptor) }
        if fsync(descriptor) != 0 { throw SpoolError("fsync", path: path, errno: errno) }
    }
}
