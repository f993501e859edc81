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
    public var catalogPath: String { root + "/catalog.sqlite" }

    public init(root: String) throws(SpoolError) {
        self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
        for directory in [self.root, temporaryRoot, inboundRoot] {
            try Self.makeDirectory(directory)
        }
    }

    static func makeDirectory(_ path: String) throws(SpoolError) {
        if mkdir(path, 0o700) != 0 {
            let code = errno
            guard code == EEXIST else { throw SpoolError("create the folder", path: path, errno: code) }
        }
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

    /// Makes the kept files durable and moves the workspace to `in/<site>/<id>/`; returns that path.
    func commitWorkspace(_ workspace: String, keeping files: [String], site: String, id: String) throws(SpoolError) -> String {
        for file in files {
            try Self.fsyncPath(workspace + "/" + file, directory: false)
        }
        try Self.fsyncPath(workspace, directory: true)
        let siteFolder = inboundRoot + "/" + site
        try Self.makeDirectory(siteFolder)
        let destination = siteFolder + "/" + id
        if rename(workspace, destination) != 0 {
            throw SpoolError("move the received files to", path: destination, errno: errno)
        }
        try Self.fsyncPath(siteFolder, directory: true)
        try Self.fsyncPath(inboundRoot, directory: true)
        return destination
    }

    static func fsyncPath(_ path: String, directory: Bool) throws(SpoolError) {
        let descriptor = open(path, (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC)
        guard descriptor >= 0 else { throw SpoolError("open", path: path, errno: errno) }
        defer { close(descriptor) }
        if fsync(descriptor) != 0 { throw SpoolError("fsync", path: path, errno: errno) }
    }
}
