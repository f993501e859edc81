import ArgumentParser
import Foundation
import GatepostCatalog
import GatepostCore
import GatepostTestSupport
import Logging

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the whole pipeline against an embedded sandbox POP3 server and print the catalog."
    )

    @Option(help: ArgumentHelp("Keep the demo's sites and spool in this folder (default: a temporary folder).", valueName: "dir"))
    var into: String?

    @Flag(name: .shortAndLong, help: "Log each step to standard error.")
    var verbose = false

    func run() async throws {
        Terminal.bootstrapLogging(level: verbose ? .info : .warning)
        let root = into ?? (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-demo-\(UUID().uuidString.prefix(8))")
        let sitesFolder = (root as NSString).appendingPathComponent("sites")
        let spoolFolder = (root as NSString).appendingPathComponent("spool")
        try FileManager.default.createDirectory(atPath: sitesFolder, withIntermediateDirectories: true)

        let server = ScriptedPOP3Server(messages: DemoMailbox.messages)
        let port = try await server.start()
        defer { Task { await server.stop() } }
        // Where the demo's acknowledgments go: an in-process SMTP server that records them.
        let smtpServer = ScriptedSMTPServer()
        let smtpPort = try await smtpServer.start()
        defer { Task { await smtpServer.stop() } }

        let siteFile = (sitesFolder as NSString).appendingPathComponent("demo.yaml")
        let siteText = """
        # The demo partner: an in-process POP3 server on 127.0.0.1.
        kind: remote-site
        name: demo
        description: Embedded sandbox mailbox
        pop3:
          host: 127.0.0.1
          port: \(port)
          security: none                  # the sandbox has no TLS; real sites use tls or starttls
          allow_plaintext_password: true  # the explicit opt-in that security: none needs
          user: \(server.user)
          password: \(server.password)
        poll:
          interval: 1m
          delete_after_retrieve: true
        smtp:                             # acknowledgments (MDNs) go to the sandbox SMTP server
          host: 127.0.0.1
          port: \(smtpPort)
          security: none
          from: gateway@ours.example
          acknowledge_any_address: true   # the sandbox messages carry no Return-Path
        application: orders

        """
        try siteText.write(toFile: siteFile, atomically: true, encoding: .utf8)
        let localFile = (sitesFolder as NSString).appendingPathComponent("local.yaml")
        try """
        # Our side: the applications received files are delivered to.
        kind: local-site
        name: ours
        applications:
          - name: orders
            folder: ../deliveries/orders      # relative to this file
            rename: "${site}-${fileName}"

        """.write(toFile: localFile, atomically: true, encoding: .utf8)
        let directory = try SiteLoader().loadDirectory(sitesFolder)
        guard let site = directory.site(named: "demo"), let local = directory.local else {
            Terminal.error("demo site files did not load: \(directory.errors)")
            throw ExitCode(2)
        }

        let spool = try Spool(root: spoolFolder)
        let catalog = try SQLiteCatalog(path: spool.catalogPath)
        Terminal.line("Sandbox POP3 server on 127.0.0.1:\(port) with \(DemoMailbox.messages.count) messages, SMTP on 127.0.0.1:\(smtpPort)")
        Terminal.block("Site file \(siteFile), spool \(spoolFolder)\n")
        let round = PollRound(spool: spool, catalog: catalog, local: local, allSites: [site], retry: .none, logger: Logger(label: "gatepost.demo"))
        let report = await round.run([site])
        for polled in report.polls {
            switch polled.result {
            case .success(let summary):
                Terminal.block(PollCommand.describe(summary) + "\n")
            case .failure(let error):
                Terminal.error("\(error.description)")
                throw ExitCode(1)
            }
        }
        for (name, sent) in report.outbox {
            switch sent {
            case .success(let summary):
                if let line = PollCommand.describe(summary, site: name) {
                    Terminal.line(line + " (acknowledgments received by the sandbox SMTP server: \(smtpServer.recorded.messages.count))")
                }
            case .failure(let error):
                Terminal.error("\(name): outbox: \(error)")
            }
        }
        switch report.deliveries {
        case .success(let outcomes)?:
            for outcome in outcomes {
                Terminal.line(PollCommand.describe(outcome))
            }
        case .failure(let error)?:
            Terminal.error("delivery stopped: \(error)")
        case nil:
            break
        }
        Terminal.block("")
        Terminal.block(Formatting.transferTable(try await catalog.transfers(TransferFilter())))
        Terminal.block("\nMessages left on the sandbox server: \(server.messages.count)")
        Terminal.line("Try: swift run gatepost catalog list --spool \(spoolFolder) --format json")
    }
}
