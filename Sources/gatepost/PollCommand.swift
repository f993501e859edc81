import ArgumentParser
import Foundation
import GatepostCatalog
import GatepostConsole
import GatepostCore
import Logging

struct PollCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "poll",
        abstract: "Poll sites now, once, and print a summary (all enabled sites when none are named)."
    )

    @OptionGroup var options: GlobalOptions

    @Argument(help: "The sites to poll.")
    var sites: [String] = []

    func run() async throws {
        options.bootstrapLogging()
        let directory = try Runtime.loadSites(options)
        let (spool, catalog): (Spool, any Catalog)
        let lock: SpoolLock?
        var daemon: (client: DaemonClient, sites: [String])?
        do {
            (spool, catalog) = try await Runtime.openSpool(options)
            do {
                lock = try SpoolLock(spool: spool)
            } catch let busy as SpoolLock.Busy {
                // A daemon polls this spool: it is asked to poll now, instead of failing on its lock.
                guard let client = DaemonClient.connect(spool: spool) else { throw busy }
                daemon = (client, try Runtime.selectSites(sites, from: directory, states: try await catalog.siteStates()).map(\.name))
                lock = nil
            }
        } catch let failure as CommandFailure {
            throw fail(failure)
        } catch {
            throw fail(CommandFailure(description: "\(error)", exitCode: 1))
        }
        if let daemon {
            try await pollThroughDaemon(daemon.client, daemon.sites)
            return
        }
        let selected: [RemoteSite]
        do {
            selected = try Runtime.selectSites(sites, from: directory, states: try await catalog.siteStates())
        } catch let failure as CommandFailure {
            throw fail(failure)
        }
        if selected.isEmpty {
            throw fail(.configuration("no enabled sites in \(options.sites)"))
        }
        // Settle what an interrupted run left: unfinished messages in tmp/ (still on the server)
        // and received files waiting for their final name.
        spool.sweepTemporary()
        do {
            try await spool.recoverPending { id in try await catalog.transfer(id: id) != nil }
            try await spool.sweepOrphanedOutgoing { path in try await catalog.outboxReferences(path: path) }
        } catch {
            throw fail(CommandFailure(description: "cannot settle the spool after an interruption: \(error)", exitCode: 1))
        }
        let logger = Logger(label: "gatepost.poll")

        var round = PollRound(
            spool: spool, catalog: catalog, local: directory.local, allSites: directory.sites, retry: RetryPolicy(), logger: logger
        )
        // On a shared catalog the records name this node, whose daemon delivers them from
        // this spool (a record naming no node would be no node's to deliver), and each site's
        // poll holds its lease as a daemon node's does: a site some node is polling is left to it.
        if !(catalog is SQLiteCatalog) {
            round.node = options.nodeName
            round.leases = SiteLeaseHolder(catalog: catalog, node: options.nodeName, leaseTime: ClusterSettings.defaultLeaseTime, logger: logger)
        }
        // On a terminal, a line that says how far each site is; nothing when output is a file.
        let progress = isatty(STDERR_FILENO) != 0 ? TerminalProgress() : nil
        if let progress {
            round.progress = { @Sendable site, messages, bytes in progress.update(site: site, messages: messages, bytes: bytes) }
        }
        defer { progress?.clear() }
        // A server's LOGIN-DELAY is recorded as when the site may be polled again.
        let report = await round.run(selected) { _, result in
            if case .failure(let error) = result { error.retryAfter } else { nil }
        }
        var failed = !report.heldElsewhere.isEmpty
        for site in report.heldElsewhere {
            Terminal.error("\(site): not polled: another node is polling it now (try again in a moment)")
        }
        for polled in report.polls {
            switch polled.result {
            case .success(let summary):
                Terminal.line(Self.describe(summary))
            case .failure(let error):
                failed = true
                Terminal.error("\(error.description)")
                if !error.partial.records.isEmpty {
                    Terminal.line(Self.describe(error.partial) + " before the failure")
                }
            }
        }
        // Acknowledgments these polls owe (and earlier ones due again) went out through each site's SMTP.
        for (site, sent) in report.outbox {
            switch sent {
            case .success(let summary):
                if let line = Self.describe(summary, site: site) { Terminal.line(line) }
                if summary.failed > 0 { failed = true }
            case .failure(let error):
                failed = true
                Terminal.error("\(site): outbox: \(error)")
            }
        }
        switch report.deliveries {
        case .success(let outcomes)?:
            for outcome in outcomes {
                Terminal.line(Self.describe(outcome))
                if outcome.state == .failed { failed = true }
            }
        case .failure(let error)?:
            failed = true
            Terminal.error("delivery stopped: \(error)")
        case nil:
            break
        }
        withExtendedLifetime(lock) {}
        if failed { throw ExitCode(1) }
    }

    /// Each site in turn, by the running daemon; the same lines as a poll of our own.
    private func pollThroughDaemon(_ daemon: DaemonClient, _ names: [String]) async throws {
        Terminal.line("a daemon polls this spool: asking it to poll now")
        var failed = false
        for name in names {
            let outcome: PollNowOutcome
            do {
                outcome = try await daemon.pollNow(name)
            } catch {
                throw fail(CommandFailure(description: "\(error)", exitCode: 1))
            }
            if let error = outcome.error {
                failed = true
                Terminal.error("\(name): \(error)")
            } else {
                Terminal.line("\(name): \(outcome.messages) new (\(Formatting.bytes(outcome.bytes)))")
            }
        }
        if failed { throw ExitCode(1) }
    }

    /// "acme: outbox: 2 sent, 1 waiting to retry, 0 failed", with ", 1 now overdue" when
    /// acknowledgments stayed away; nil when nothing happened.
    static func describe(_ summary: OutboxSender.Summary, site: String) -> String? {
        guard summary.sent + summary.retrying + summary.failed + summary.overdue > 0 else { return nil }
        return "\(site): outbox: \(summary.sent) sent, \(summary.retrying) waiting to retry, \(summary.failed) failed"
            + (summary.overdue > 0 ? ", \(summary.overdue) now overdue (no acknowledgment within ack_timeout)" : "")
    }

    static func describe(_ outcome: DeliveryOutcome) -> String {
        let application = outcome.application ?? "-"
        switch outcome.state {
        case .delivered: return "\(outcome.id) -> \(application): delivered \(outcome.deliveredPath ?? "")"
        case .routed: return "\(outcome.id) -> \(application): not delivered, trying again at \(outcome.retryAt.map(Formatting.timestamp) ?? "-"): \(outcome.error ?? "")"
        default: return "\(outcome.id) -> \(application): FAILED: \(outcome.error ?? "unknown error")"
        }
    }

    static func describe(_ summary: PollSummary) -> String {
        var counts: [String: Int] = [:]
        for record in summary.records {
            let label = record.fileName == TransferRecord.recoverFileName || record.fileName == TransferRecord.duplicateFileName
                ? record.fileName ?? record.type.rawValue : record.type.rawValue
            counts[label, default: 0] += 1
        }
        let breakdown = ["XFER", "MSG", "EERP", "RECOVER", "DUPLICATE"].compactMap { label in
            counts[label].map { "\(label) \($0)" }
        }.joined(separator: ", ")
        var text = "\(summary.site): \(summary.records.count) new"
        if !breakdown.isEmpty { text += " (\(breakdown))" }
        text += ", \(summary.alreadyRetrieved) already retrieved, \(summary.deleted) deleted"
        if summary.skippedTooLarge > 0 { text += ", \(summary.skippedTooLarge) left on the server (too large)" }
        if !summary.skipped.isEmpty {
            let numbers = summary.skipped.map { String($0.number) }.joined(separator: ", ")
            text += ", \(summary.skipped.count) skipped (message \(numbers): could not be retrieved; tried again at the next poll)"
        }
        text += ", \(Formatting.bytes(summary.bytes)) in \(Formatting.duration(summary.duration))"
        if let peak = peakResidentMemory() { text += ", peak memory \(Formatting.bytes(peak))" }
        return text
    }

    /// The most memory this process has had resident so far (the kernel's VmHWM), for the
    /// summary: an operator sees what a large message cost, and the bounded-memory test reads it.
    static func peakResidentMemory() -> Int64? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kib = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ Int64($0) })
        else { return nil }
        return kib * 1024
    }
}
