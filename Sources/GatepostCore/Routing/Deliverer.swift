import Crypto
import Foundation
import GatepostCatalog
import GatepostWire
import Logging
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What happened to one transfer in a delivery run.
public struct DeliveryOutcome: Sendable, Hashable {
    public var id: String
    public var application: String?
    public var state: TransferRecord.State
    public var deliveredPath: String?
    public var error: String?
    /// For a failed attempt that will be tried again: when.
    public var retryAt: Date?
}

/// Routes received transfers to their applications and delivers them: the file is copied into
/// the application's folder under a temporary name, fsynced, and linked to its final name (link
/// never replaces, so nothing is overwritten), then the application's command runs.
///
/// Exactly-once: the chosen target is written to the catalog before the link. After a crash
/// between the link and the state update, the next run finds the target in place with the
/// record's SHA-256 and does not copy again. (A command that ran but whose success was not yet
/// recorded runs again: commands should be idempotent.)
public struct Deliverer: Sendable {
    public var local: LocalSite
    public var catalog: any Catalog
    public var logger: Logger
    /// With several nodes on one catalog: each delivery is claimed there first
    /// (``TransferStore/claimDelivery(id:due:until:)``, for ``claimLease(for:)``), so that a
    /// transfer two nodes could deliver (files on a file system both read) is delivered once.
    public var claimsDeliveries = false

    /// How long a claimed delivery is this process's: if it dies while delivering, another
    /// node takes the transfer up after this. Longer than a delivery and its command take: 10
    /// minutes, or the longest `command_timeout` and a minute more.
    static func claimLease(for local: LocalSite) -> TimeInterval {
        let longestCommand = local.applications.map(\.commandTimeout.timeInterval).max() ?? 0
        return max(600, longestCommand + 60)
    }

    public init(local: LocalSite, catalog: any Catalog, logger: Logger) {
        self.local = local
        self.catalog = catalog
        self.logger = logger
    }

    /// Routes and delivers every inbound transfer still waiting; returns what happened to each
    /// one that was routed (unrouted transfers stay `received` and are not listed).
    /// `now` is the clock for what is due and when a failed attempt goes again (tests pass
    /// their own, so that "not due yet" does not depend on how busy the machine is).
    public func deliverPending(sites: [RemoteSite], now: Date = Date()) async throws -> [DeliveryOutcome] {
        try await deliverPending(sitesByName: Dictionary(sites.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first }), now: now)
    }

    /// Only the transfers `including` accepts (all by default).
    public func deliverPending(
        sitesByName: [String: RemoteSite], now: Date = Date(), including: (TransferRecord) async -> Bool = { _ in true }
    ) async throws -> [DeliveryOutcome] {
        var outcomes: [DeliveryOutcome] = []
        // Each claim is made when its delivery starts, not when the run did, or a long run's
        // later claims would end before their deliveries.
        let clock = RunClock(startingAt: now)
        let lease = Self.claimLease(for: local)
        for record in try await catalog.transfersToDeliver(at: now) {
            guard await including(record) else { continue }
            // Every poll round delivers what is waiting; a transfer another round of this
            // process is delivering is its: two would copy into the same temporary name.
            guard Self.beginDelivering(record.id) else { continue }
            defer { Self.endDelivering(record.id) }
            let claim: (() async throws -> Bool)? = claimsDeliveries ? { [catalog] in
                let at = clock.now
                return try await catalog.claimDelivery(id: record.id, due: at, until: at.addingTimeInterval(lease))
            } : nil
            if let outcome = try await deliver(record, site: sitesByName[record.site], now: now, claim: claim) {
                outcomes.append(outcome)
            }
        }
        return outcomes
    }

    /// Transfers being delivered by this process.
    private static let delivering = Mutex<Set<String>>([])

    static func beginDelivering(_ id: String) -> Bool {
        delivering.withLock { $0.insert(id).inserted }
    }

    static func endDelivering(_ id: String) {
        _ = delivering.withLock { $0.remove(id) }
    }

    /// Routes (if still `received`) and delivers one transfer. Nil when no route applies. A
    /// failed attempt is tried again later (the application's `attempts` and `retry_delay`)
    /// unless `retrying` is false, as for an operator's `catalog retry`.
    /// `claim`: taken once the transfer is known to have an application (an unrouted one is
    /// not claimed, so a route added later applies at once); nil when it is not taken.
    public func deliver(
        _ record: TransferRecord, site: RemoteSite?, retrying: Bool = true, now: Date = Date(),
        claim: (() async throws -> Bool)? = nil
    ) async throws -> DeliveryOutcome? {
        var record = record
        // A received transfer goes where its site's routes say now; none: it waits.
        let routedTo = record.state == .received ? site.flatMap { Router.application(for: record, site: $0) } : nil
        if record.state == .received, routedTo == nil { return nil }
        if let claim, try await !claim() { return nil }
        if let routedTo {
            record.application = routedTo
            record.state = .routed
            try await catalog.updateDelivery(id: record.id, state: .routed, application: routedTo, error: nil, deliveredPath: nil)
        }
        guard let applicationName = record.application else { return nil }
        var transferLogger = logger
        transferLogger[metadataKey: "transfer"] = "\(record.id)"
        transferLogger[metadataKey: "site"] = "\(record.site)"
        transferLogger[metadataKey: "application"] = "\(applicationName)"

        do {
            guard let application = local.application(named: applicationName) else {
                throw DeliveryError("no application `\(applicationName)` in \(local.sourceFile.isEmpty ? "sites/local.yaml" : local.sourceFile)")
            }
            let target = try await placeFile(record, application: application)
            if let command = application.command {
                try await run(command, for: record, deliveredPath: target, application: application)
            }
            try await catalog.recordDeliveryAttempt(id: record.id, .delivered(at: now, application: applicationName, path: target))
            transferLogger.info("delivered", metadata: ["path": "\(target)"])
            EngineMetrics.delivery(application: applicationName, result: "delivered")
            return DeliveryOutcome(id: record.id, application: applicationName, state: .delivered, deliveredPath: target)
        } catch {
            let message = "\(error)"
            if retrying, let application = local.application(named: applicationName) {
                let failures = try await catalog.deliveryAttempts(id: record.id) + 1
                if failures < application.attempts {
                    let wait = application.retryDelay * (1 << min(failures - 1, 16))
                    let at = now.addingTimeInterval(wait.timeInterval)
                    try await catalog.recordDeliveryAttempt(id: record.id, .retrying(at: now, application: applicationName, error: message, retryAt: at))
                    transferLogger.warning("delivery failed; will try again", metadata: ["error": "\(message)", "attempt": "\(failures)"])
                    EngineMetrics.delivery(application: applicationName, result: "retrying")
                    return DeliveryOutcome(id: record.id, application: applicationName, state: .routed, error: message, retryAt: at)
                }
            }
            try await catalog.recordDeliveryAttempt(id: record.id, .failed(at: now, application: applicationName, error: message))
            transferLogger.warning("delivery failed", metadata: ["error": "\(message)"])
            EngineMetrics.delivery(application: applicationName, result: "failed")
            return DeliveryOutcome(id: record.id, application: applicationName, state: .failed, error: message)
        }
    }

    struct DeliveryError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// The delivered file's final path; copies only if an earlier attempt did not complete it.
    /// The file work (a copy and fsync can take seconds for a large file) runs on a thread of its
    /// own (``offloaded(_:)``): on the concurrency pool it would stall every other task, polls'
    /// reads included, and on NIO's small pool it would hold up polls' commits.
    private func placeFile(_ record: TransferRecord, application: LocalSite.Application) async throws -> String {
        let previous = try await catalog.deliveryTarget(id: record.id)
        // A crash may have left the temporary copy behind; it is never anyone's file.
        let temporary = application.folder + "/.gatepost-\(record.id).part"
        let placed = try await offloaded { () throws -> String? in
            guard let source = record.path, FileManager.default.fileExists(atPath: source) else {
                throw DeliveryError("the spool file \(record.path ?? "-") is missing")
            }
            try Self.makeFolder(application.folder, application: application)
            unlink(temporary)
            // Only a copy in this application's folder counts: a retry after the routes changed,
            // or a redelivery to another application, is a new delivery.
            if let previous, (previous as NSString).deletingLastPathComponent == application.folder,
               FileManager.default.fileExists(atPath: previous),
               let sha256 = record.sha256, try Self.sha256(ofFile: previous) == sha256 {
                return previous
            }
            try Self.copy(source, to: temporary, mode: application.fileMode, group: application.group)
            return nil
        }
        if let placed { return placed }
        defer { unlink(temporary) }
        let name = deliveryName(record, application: application)
        var taken = Set<String>()
        while true {
            let candidate = SafeFileName.unique(name, avoiding: taken)
            let target = application.folder + "/" + candidate
            if FileManager.default.fileExists(atPath: target) {
                taken.insert(candidate)
                continue
            }
            try await catalog.recordDeliveryTarget(id: record.id, application: application.name, target: target)
            let linked = try await NIOThreadPool.singleton.runIfActive { () throws -> Bool in
                guard link(temporary, target) == 0 else {
                    guard errno == EEXIST else { throw SpoolError("link", path: target, errno: errno) }
                    return false
                }
                try Spool.fsyncPath(application.folder, directory: true)
                return true
            }
            if linked {
                FailPoint.hit("deliver.after-link")
                return target
            }
            taken.insert(candidate)
        }
    }

    /// The delivered file's name: the rename pattern or the file's own name. A message kept
    /// whole ends in `.eml` and a message text in `.txt`, renamed or not, so that what opens
    /// them knows what they are.
    func deliveryName(_ record: TransferRecord, application: LocalSite.Application) -> String {
        let requiredExtension: String? = record.type == .msg ? "txt" : record.keptWhole ? "eml" : nil
        var name: String
        if let pattern = application.rename {
            name = RenamePattern.apply(pattern, to: record, application: application.name)
        } else {
            switch record.type {
            case .msg: name = "\(application.name)-\(record.id).txt"
            case .xfer, .eerp, .probe: name = record.wholeMessageFileName ?? record.fileName ?? record.id
            }
        }
        if let requiredExtension, (name as NSString).pathExtension.lowercased() != requiredExtension {
            name += "." + requiredExtension
        }
        return SafeFileName.make(name)
    }

    private func run(_ command: [String], for record: TransferRecord, deliveredPath: String, application: LocalSite.Application) async throws {
        guard let program = command.first else { return }
        let fields = CommandEnvironment.fields(of: record, application: application.name, deliveredPath: deliveredPath)
        let environment = CommandEnvironment.make(parent: ProcessInfo.processInfo.environment, fields: fields, application: application.environment)
        let arguments = command.dropFirst().map { CommandEnvironment.expand($0, fields: fields) } + [deliveredPath]
        let result: ChildProcess.Result
        do {
            // Its own exit status decides; what it left running in its process group ends with it.
            result = try await ChildProcess.run(
                program, arguments, environment: environment, timeout: application.commandTimeout, maxOutput: 64 * 1024,
                endingItsProcessGroup: true
            )
        } catch {
            throw DeliveryError("cannot run the command `\(program)`: \(error)")
        }
        if result.timedOut {
            throw DeliveryError("the command `\(program)` ran longer than \(application.commandTimeout) and was killed")
        }
        guard result.status == 0 else {
            let tail = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines).suffix(500)
            throw DeliveryError("the command `\(program)` exited with \(result.status)\(tail.isEmpty ? "" : ": \(tail)")")
        }
    }

    /// The delivery folder, created with the application's `folder_mode` and `group` when it
    /// does not exist (an existing folder is left as its owner set it up).
    static func makeFolder(_ folder: String, application: LocalSite.Application) throws {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) {
            guard isFolder.boolValue else { throw DeliveryError("the delivery folder \(folder) is a file, not a folder") }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw DeliveryError("cannot create the delivery folder \(folder): \(Self.reason(error))")
        }
        // chmod, not the mode of mkdir: gatepost's umask (077) would take the group's bits.
        guard chmod(folder, mode_t(application.folderMode)) == 0 else { throw SpoolError("chmod", path: folder, errno: errno) }
        if let group = application.group, chown(folder, uid_t.max, gid_t(group)) != 0 {
            throw SpoolError("give the group \(application.groupName ?? String(group)) to", path: folder, errno: errno)
        }
    }

    /// A file-system error in words: Foundation's own text (`NSCocoaErrorDomain Code=512`)
    /// means nothing to an operator.
    static func reason(_ error: any Error) -> String {
        let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
        if let code = underlying.map({ Int32($0.code) }), underlying?.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(code))
        }
        return (error as NSError).localizedFailureReason ?? "\(error)"
    }

    static func copy(_ source: String, to destination: String, mode: UInt32 = 0o640, group: UInt32? = nil) throws {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw SpoolError("open", path: source, errno: errno) }
        defer { close(input) }
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw SpoolError("create", path: destination, errno: errno) }
        // fchmod, not the mode of open: gatepost's umask (077) would take the group's bits.
        if fchmod(output, mode_t(mode)) != 0 || (group.map { fchown(output, uid_t.max, gid_t($0)) != 0 } ?? false) {
            let failure = SpoolError("set the mode or group of", path: destination, errno: errno)
            close(output)
            unlink(destination)
            throw failure
        }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var failure: SpoolError?
        while failure == nil {
            let count = read(input, &buffer, buffer.count)
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                failure = SpoolError("read", path: source, errno: errno)
                break
            }
            var written = 0
            while written < count {
                let n = buffer.withUnsafeBytes { bytes in
                    bytes.baseAddress.map { write(output, $0 + written, count - written) } ?? -1
                }
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = SpoolError("write", path: destination, errno: errno)
                    break
                }
                written += n
            }
        }
        if failure == nil, fsync(output) != 0 { failure = SpoolError("fsync", path: destination, errno: errno) }
        close(output)
        if let failure {
            unlink(destination)
            throw failure
        }
    }

    static func sha256(ofFile path: String) throws -> String {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw SpoolError("open", path: path, errno: errno) }
        defer { close(descriptor) }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = read(descriptor, &buffer, buffer.count)
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                throw SpoolError("read", path: path, errno: errno)
            }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        }
        return hexString(hasher.finalize())
    }
}
