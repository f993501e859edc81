import Foundation
import NIOPosix
import Synchronization
import CGatepostSystem
#if canImport(Glibc)
import Glibc
#endif

/// The spool folder: `tmp/` for messages being received, `in/<site>/<transfer id>[.suffix]` for
/// kept files, `out/` for outgoing messages, and the catalog database. Everything is created
/// owner-only.
///
/// The crash-safety rule: files are written in `tmp/`, fsynced, and renamed into `in/<site>/`
/// under a pending name (then the site folder fsynced) before the catalog row is committed.
/// Whatever a crash leaves in `tmp/` is swept at the next start; the message is still on the server.
public struct Spool: Sendable {
    public let root: String

    public var temporaryRoot: String { root + "/tmp" }
    public var inboundRoot: String { root + "/in" }
    /// Outgoing messages (acknowledgments, outbound files) waiting in the outbox.
    public var outboundRoot: String { root + "/out" }
    public var catalogPath: String { root + "/catalog.sqlite" }

    /// Whether any site folder in `in/` holds a file: received transfers a catalog knew.
    public var holdsReceivedFiles: Bool {
        let sites = (try? FileManager.default.contentsOfDirectory(atPath: inboundRoot)) ?? []
        return sites.contains { site in
            !(((try? FileManager.default.contentsOfDirectory(atPath: inboundRoot + "/" + site)) ?? []).isEmpty)
        }
    }

    public init(root: String) throws(SpoolError) {
        self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
        let createdRoot = try Self.makeDirectory(self.root)
        var createdFolder = false
        for directory in [temporaryRoot, inboundRoot, outboundRoot] {
            if try Self.makeDirectory(directory) { createdFolder = true }
        }
        // New folders' names made durable before anything is committed under them: a crash
        // right after the first poll's DELEs must not lose the spool. (SQLite syncs the root
        // itself when it creates the catalog's WAL.) The parent may not be ours to open: there
        // it is best effort.
        if createdFolder || createdRoot {
            try Self.fsyncPath(self.root, directory: true)
        }
        if createdRoot {
            let parent = (self.root as NSString).deletingLastPathComponent
            try? Self.fsyncPath(parent.isEmpty ? "." : parent, directory: true)
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

    /// Where the files of a message being received start (`tmp/<id>`, then `.part-N`, ...).
    func temporaryPrefix(id: String) -> String {
        temporaryRoot + "/" + id
    }

    /// A transfer's main file (`in/<site>/<id>`); its other files add a suffix (`.html`, `.txt`).
    public func transferPath(site: String, id: String) -> String {
        inboundRoot + "/" + site + "/" + id
    }

    /// Where a transfer's file waits between its fsync and the commit (`in/<site>/.<id><suffix>`).
    func pendingPath(site: String, id: String, suffix: String = "") -> String {
        inboundRoot + "/" + site + "/." + id + suffix
    }

    /// Makes a batch of received messages' kept files durable and moves them to
    /// `in/<site>/.<id><suffix>` (pending: not yet in the catalog): every file fsynced, then the
    /// renames, then the site folder fsynced once for all. ``publish(site:id:suffixes:)`` gives
    /// them their final names once the records are committed.
    ///
    /// Why pending names: a crash between the move and the commit leaves hidden files that
    /// ``recoverPending(isCommitted:)`` removes (the message is still on the server); a crash
    /// between the commit and the publish leaves some it publishes. Only pending names are
    /// examined at start, never the whole spool. Why one flat folder per site and not a folder
    /// per transfer: each file, folder and fsync is a disk write of its own on a file system
    /// without a journal; one file per message is what a mail client pays too.
    func commitFiles(_ batch: [(id: String, files: [TransferAssembler.KeptFile])], site: String) throws(SpoolError) {
        let siteFolder = inboundRoot + "/" + site
        try makeSiteFolderDurable(siteFolder)
        // Files are written (bodies in memory straight to their pending names) and their
        // writeback started, then fsynced, a window at a time: the disk works on many files at
        // once instead of one round trip per file, which halves the cost of the fsyncs, and a
        // large batch does not run out of descriptors.
        let files = batch.flatMap { item in item.files.map { (id: item.id, file: $0) } }
        var moves: [(from: String, to: String)] = []
        var start = 0
        while start < files.count {
            let window = files[start..<min(files.count, start + Self.fsyncWindow)]
            start = window.endIndex
            var opened: [(descriptor: Int32, path: String)] = []
            defer {
                for file in opened { close(file.descriptor) }
            }
            for (id, file) in window {
                let pending = pendingPath(site: site, id: id, suffix: file.suffix)
                let descriptor: Int32
                switch file.content {
                case .file(let source):
                    descriptor = open(source, O_RDONLY | O_CLOEXEC)
                    guard descriptor >= 0 else { throw SpoolError("open", path: source, errno: errno) }
                    opened.append((descriptor, source))
                    moves.append((source, pending))
                case .bytes(let bytes):
                    descriptor = try Self.create(pending, containing: bytes)
                    opened.append((descriptor, pending))
                }
                // Only a hint: fsync below reports any write error.
                _ = gatepost_start_writeback(descriptor)
            }
            for file in opened {
                if fsync(file.descriptor) != 0 { throw SpoolError("fsync", path: file.path, errno: errno) }
            }
        }
        for move in moves {
            if rename(move.from, move.to) != 0 { throw SpoolError("move the received file to", path: move.to, errno: errno) }
        }
        // The names must be durable before the catalog says "committed": otherwise a crash
        // could leave a record whose files are swept from tmp/ or were never named.
        try Self.fsyncPath(siteFolder, directory: true)
    }

    /// Files fsynced together: bounds the descriptors a commit holds open.
    static let fsyncWindow = 64

    /// Site folders this process has made durable (created if missing, and their parent
    /// fsynced): once per site, whoever created the folder, since the process (or an earlier one
    /// that crashed) may have created it without the fsync having happened.
    private static let durableSiteFolders = Mutex<Set<String>>([])

    private func makeSiteFolderDurable(_ siteFolder: String) throws(SpoolError) {
        guard !Self.durableSiteFolders.withLock({ $0.contains(siteFolder) }) else { return }
        try Self.makeDirectory(siteFolder)
        try Self.fsyncPath(inboundRoot, directory: true)
        Self.durableSiteFolders.withLock { _ = $0.insert(siteFolder) }
    }

    /// Creates `path` (exclusively, owner-only) holding `bytes`; returns the open descriptor.
    static func create(_ path: String, containing bytes: [UInt8]) throws(SpoolError) -> Int32 {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw SpoolError("create", path: path, errno: errno) }
        var failure: SpoolError?
        bytes.withUnsafeBytes { buffer in
            do throws(SpoolError) { try SpoolFileWriter.writeFully(descriptor, buffer, path: path) } catch { failure = error }
        }
        if let failure {
            close(descriptor)
            throw failure
        }
        return descriptor
    }

    /// Gives a committed transfer's pending files their final names. Not fsynced on purpose: if
    /// a crash loses a rename, the next start publishes the pending file again.
    func publish(site: String, id: String, suffixes: [String]) throws(SpoolError) {
        for suffix in suffixes {
            let final = transferPath(site: site, id: id) + suffix
            if rename(pendingPath(site: site, id: id, suffix: suffix), final) != 0 {
                throw SpoolError("publish the received file to", path: final, errno: errno)
            }
        }
    }

    /// Settles what a crash left between receiving and publishing: pending files (and the
    /// pending folders of older spools) whose transfer is committed are published, the others
    /// removed. Returns (published, removed).
    @discardableResult
    public func recoverPending(isCommitted: (String) async throws -> Bool) async throws -> (published: Int, removed: Int) {
        var published = 0
        var removed = 0
        var committed: [String: Bool] = [:]
        let sites = (try? FileManager.default.contentsOfDirectory(atPath: inboundRoot)) ?? []
        for site in sites where !site.hasPrefix(".") {
            let folder = inboundRoot + "/" + site
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            for entry in entries where entry.hasPrefix(".") && entry.count > 1 {
                // `.<id><suffix>`: transfer ids hold no dot.
                let id = String(entry.dropFirst().prefix { $0 != "." })
                let known: Bool
                if let answer = committed[id] {
                    known = answer
                } else {
                    known = try await isCommitted(id)
                    committed[id] = known
                }
                if known {
                    let final = folder + "/" + entry.dropFirst()
                    if rename(folder + "/" + entry, final) != 0 {
                        throw SpoolError("publish the received file to", path: final, errno: errno)
                    }
                    published += 1
                } else {
                    try? FileManager.default.removeItem(atPath: folder + "/" + entry)
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

extension Spool {
    /// Whether this process can read the file at `path`: a file of another node's spool is,
    /// when the spools are on one file system shared by the nodes. Asked on NIO's thread pool:
    /// on a network file system the answer can take as long as the server does.
    public static func isReadable(_ path: String) async -> Bool {
        (try? await NIOThreadPool.singleton.runIfActive { access(path, R_OK) == 0 }) ?? false
    }
}
