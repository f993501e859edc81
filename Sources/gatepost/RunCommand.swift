import ArgumentParser
import Dispatch
import Foundation
import GatepostCatalog
import GatepostConsole
import GatepostCore
import Logging
import ServiceLifecycle
import Synchronization

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Poll all enabled sites on their schedules until SIGTERM or SIGINT (SIGHUP reloads sites/)."
    )

    @OptionGroup var options: GlobalOptions

    @Option(help: "Polls running at once, over all sites.") var concurrentPolls = 16
    @Option(help: "Polls running at once against one server host.") var concurrentPollsPerHost = 2
    @Option(help: "text, or json: one JSON object per line, for a log collector.") var logFormat: LogFormat = .text
    @Option(help: ArgumentHelp("With a PostgreSQL catalog: how long a node's heartbeat and site leases last; a dead node's sites are taken over after this (such as 60s, 2m).", valueName: "duration"))
    var leaseTime = DurationText.describe(ClusterSettings.defaultLeaseTime)
    @OptionGroup var console: ConsoleOptions

    enum LogFormat: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    func run() async throws {
        // A daemon logs what it does; `-v` is for the one-shot commands.
        switch logFormat {
        case .text: Terminal.bootstrapLogging(level: options.verbose ? .debug : .info)
        case .json: JSONLogHandler.bootstrap(level: options.verbose ? .debug : .info)
        }
        let logger = Logger(label: "gatepost.run")
        _ = try Runtime.loadSites(options)
        let (spool, catalog): (Spool, any Catalog)
        let lock: SpoolLock
        do {
            (spool, catalog) = try await Runtime.openSpool(options)
            lock = try SpoolLock(spool: spool)
            spool.sweepTemporary()
            try await spool.recoverPending { id in try await catalog.transfer(id: id) != nil }
            try await spool.sweepOrphanedOutgoing { path in try await catalog.outboxReferences(path: path) }
        } catch let failure as CommandFailure {
            throw fail(failure)
        } catch {
            throw fail(CommandFailure(description: "\(error)", exitCode: 1))
        }

        let reload = Mutex(false)
        signal(SIGHUP, SIG_IGN)
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP)
        hangup.setEventHandler { reload.withLock { $0 = true } }
        hangup.resume()

        // A PostgreSQL catalog is shared: this daemon is one node among others.
        var cluster: ClusterSettings?
        if !(catalog is SQLiteCatalog) {
            guard let lease = DurationText.parse(leaseTime), lease >= .seconds(3) else {
                throw fail(.configuration("--lease-time `\(leaseTime)`: give a duration of at least 3s, such as 60s or 2m"))
            }
            let consoleURL = try console.configuration(defaultAddress: nil).map { "\($0.usesTLS ? "https" : "http")://\($0.host):\($0.port)" }
            cluster = ClusterSettings(node: options.nodeName, leaseTime: lease, consoleURL: consoleURL)
        } else if options.node != nil {
            throw fail(.configuration("--node names a node among several sharing a PostgreSQL catalog: give --catalog postgres://... too"))
        }
        var scheduler = Scheduler(
            sitesFolder: options.sites, spool: spool, catalog: catalog,
            limits: .init(concurrentPolls: concurrentPolls, concurrentPollsPerHost: concurrentPollsPerHost),
            logger: logger,
            reloadRequested: { reload.withLock { value in defer { value = false }; return value } }
        )
        // The daemon answers the command line on its control socket (gatepost poll while it
        // runs, gatepost status) and, with --http, the console: polls asked for go to the
        // scheduler.
        scheduler.cluster = cluster
        let polls = DaemonPolls()
        let sites = CurrentSites(try Runtime.loadSites(options))
        scheduler.polls = polls
        scheduler.sitesLoaded = { sites.update($0) }
        var environment = ConsoleEnvironment(
            catalog: catalog, sites: { sites.directory }, polls: polls,
            accounts: try console.accounts(sites: options.sites), logger: Logger(label: "gatepost.console"), mode: "run", spool: spool
        )
        environment.node = cluster?.node
        var services: [any Service] = []
        do {
            services.append(try ConsoleServer.controlService(environment, socket: DaemonClient.socketPath(spool: spool)))
        } catch {
            logger.warning("no control socket: gatepost poll and status cannot reach this daemon", metadata: ["reason": "\(error)"])
        }
        if let configuration = try console.configuration(defaultAddress: nil) {
            services.append(try console.service(environment, configuration: configuration))
            logger.info("console", metadata: ["url": "\(configuration.usesTLS ? "https" : "http")://\(configuration.host):\(configuration.port)/"])
        }
        services.insert(scheduler, at: 0)
        if let indexed = catalog as? any SearchIndexing {
            services.append(SearchIndexer(catalog: indexed, logger: logger))
        }
        services.append(AlertMonitor(catalog: catalog, sites: { sites.directory }, logger: Logger(label: "gatepost.alerts")))
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
        hangup.cancel()
        // Nobody answers on it any more; removed while the spool is still ours.
        unlink(DaemonClient.socketPath(spool: spool))
        withExtendedLifetime(lock) {}
    }
}
