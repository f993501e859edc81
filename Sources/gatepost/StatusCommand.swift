import ArgumentParser
import Foundation
import GatepostCatalog
import GatepostConsole
import GatepostCore
import Logging

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "The daemon, its polls in progress, the outbox, and what needs an operator (failing, stuck or misconfigured sites; overdue acknowledgments)."
    )

    @OptionGroup var options: GlobalOptions
    @Option(help: "table or json.") var format: OutputFormat = .table

    func run() async throws {
        options.bootstrapLogging()
        let (spool, catalog): (Spool, any Catalog)
        do {
            (spool, catalog) = try await Runtime.openSpool(options)
        } catch let failure as CommandFailure {
            throw fail(failure)
        }
        let status: DaemonStatus
        var daemon = "not running"
        if let client = DaemonClient.connect(spool: spool), let answered = try? await client.status() {
            status = answered
            daemon = "running (\(answered.version))"
        } else {
            // No daemon: the same view, from the catalog alone.
            let directory = try Runtime.loadSites(options)
            let environment = ConsoleEnvironment(
                catalog: catalog, sites: { directory }, polls: PollsWithoutDaemon(spool: spool, catalog: catalog, sites: { directory }, logger: Logger(label: "status")),
                accounts: nil, logger: Logger(label: "status"), mode: "none"
            )
            status = try await ConsoleStatus.status(environment)
        }
        if format == .json {
            print(try Formatting.json(status))
            return
        }
        var lines = ["daemon: \(daemon)", "sites: \(status.sites), \(status.enabled) enabled"]
        lines.append("polls in progress: " + (status.running.isEmpty ? "none" : status.running.map {
            "\($0.site) (since \(Formatting.timestamp($0.started)), \($0.messages) messages, \(Formatting.bytes($0.bytes)))"
        }.joined(separator: "; ")))
        lines.append("outbox: \(status.outboxPending) waiting, \(status.outboxDue) due now")
        for site in status.attention {
            let why = site.configurationError.map { "config error: \($0)" } ?? site.lastError.map { "failing: \($0)" }
                ?? (site.stuck > 0 ? "\(site.stuck) message(s) stuck" : site.unavailableSecrets.joined(separator: "; "))
            lines.append("needs attention: \(site.name): \(why)")
        }
        for transfer in status.overdue {
            lines.append("acknowledgment overdue: \(transfer.id) \(transfer.fileName ?? "") to \(transfer.site), sent \(Formatting.timestamp(transfer.sentAt))")
        }
        for node in status.nodes {
            let state = node.alive ? "alive, beat \(Formatting.timestamp(node.heartbeatAt))" : "gone since \(Formatting.timestamp(node.heartbeatAt))"
            let polling = node.polling.isEmpty ? "" : "; polling \(node.polling.joined(separator: ", "))"
            lines.append("node \(node.name): \(state), \(node.assignedSites) sites\(polling)")
        }
        lines.append("open alerts: \(status.alerts.isEmpty ? "none" : String(status.alerts.count))")
        for alert in status.alerts {
            let acknowledged = alert.acknowledgedBy.map { ", acknowledged by \($0)" } ?? ""
            lines.append("alert \(alert.id) \(alert.kind) since \(Formatting.timestamp(alert.openedAt))\(acknowledged): \(alert.summary)")
        }
        Terminal.block(lines.joined(separator: "\n"))
    }
}
