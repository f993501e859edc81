import ArgumentParser
import Foundation
import GatepostCatalog
import GatepostConsole
import GatepostCore
import Logging
import ServiceLifecycle

/// Where the console listens and with what: shared by `gatepost serve` and `gatepost run --http`.
struct ConsoleOptions: ParsableArguments {
    @Option(name: .customLong("http"), help: ArgumentHelp("Where the console listens, HOST:PORT (127.0.0.1:8480 by default for serve). Beyond the local machine it needs TLS and users.", valueName: "address"))
    var address: String?

    @Option(name: .customLong("http-certificate"), help: ArgumentHelp("PEM certificate chain for HTTPS.", valueName: "file"))
    var certificate: String?

    @Option(name: .customLong("http-key"), help: ArgumentHelp("PEM private key for HTTPS.", valueName: "file"))
    var key: String?

    @Option(name: .customLong("users"), help: ArgumentHelp("Console users and API tokens (default: users.yaml beside the sites folder).", valueName: "file"))
    var users: String?

    /// The server's settings, or nil when no address was given and `required` is false.
    func configuration(defaultAddress: String?) throws -> ConsoleServer.Configuration? {
        guard let text = address ?? defaultAddress else { return nil }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw fail(.configuration("--http `\(text)`: give HOST:PORT, such as 127.0.0.1:8480"))
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard (certificate == nil) == (key == nil) else {
            throw fail(.configuration("--http-certificate and --http-key go together"))
        }
        return ConsoleServer.Configuration(host: host.isEmpty ? "127.0.0.1" : host, port: port, certificate: certificate, key: key)
    }

    func accounts(sites: String) throws -> ConsoleAccounts? {
        do {
            return try ConsoleAccounts.load(path: users ?? ConsoleAccounts.defaultPath(sites: sites))
        } catch {
            throw fail(.configuration(error.description))
        }
    }

    /// The console as a service of the process, or a configuration error in the operator's words.
    func service(_ environment: ConsoleEnvironment, configuration: ConsoleServer.Configuration) throws -> any Service {
        ConsoleMetrics.bootstrap()
        do {
            return try ConsoleServer.service(environment, configuration: configuration)
        } catch let error as ConsoleServer.ExposureError {
            throw fail(.configuration(error.description))
        } catch {
            throw fail(.configuration("the console cannot start: \(error)"))
        }
    }
}

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "The console and REST API over the catalog, without polling (gatepost run --http has both).",
        discussion: "Poll now runs the site's poll here, under the spool's lock: refused while a daemon or a gatepost poll holds it."
    )

    @OptionGroup var options: GlobalOptions
    @OptionGroup var console: ConsoleOptions

    func run() async throws {
        Terminal.bootstrapLogging(level: options.verbose ? .debug : .info)
        let logger = Logger(label: "gatepost.serve")
        let sites: CurrentSites
        do {
            sites = try CurrentSites(watching: options.sites)
        } catch let error as SiteConfigurationError {
            throw fail(.configuration(error.description))
        }
        let (spool, catalog): (Spool, any Catalog)
        do {
            (spool, catalog) = try await Runtime.openSpool(options)
        } catch let failure as CommandFailure {
            throw fail(failure)
        }
        guard let configuration = try console.configuration(defaultAddress: "127.0.0.1:8480") else { return }
        let directory: @Sendable () async -> SiteDirectory = { sites.directory }
        let environment = ConsoleEnvironment(
            catalog: catalog, sites: directory,
            polls: PollsWithoutDaemon(spool: spool, catalog: catalog, sites: directory, logger: Logger(label: "gatepost.poll")),
            accounts: try console.accounts(sites: options.sites), logger: logger, mode: "serve", spool: spool
        )
        let service = try console.service(environment, configuration: configuration)
        logger.info("console", metadata: ["url": "\(configuration.usesTLS ? "https" : "http")://\(configuration.host):\(configuration.port)/"])
        // A store with an index of its own to keep up (SQLite's FTS table) gets its indexer.
        let indexer = (catalog as? any SearchIndexing).map { SearchIndexer(catalog: $0, logger: logger) }
        let group = ServiceGroup(services: [service] + (indexer.map { [$0] } ?? []), gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}

struct ConsoleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Console accounts: password hashes and API tokens for users.yaml.",
        subcommands: [HashPassword.self, NewToken.self]
    )

    struct HashPassword: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hash-password",
            abstract: "Read a password from standard input (one line) and print its bcrypt hash for users.yaml."
        )

        func run() async throws {
            guard let line = readLine(strippingNewline: true), !line.isEmpty else {
                throw fail(.configuration("give the password on standard input, e.g. `gatepost console hash-password < file`"))
            }
            guard line.count >= 12 else { throw fail(.configuration("a console password needs 12 characters or more")) }
            print(ConsoleAuthenticator.hashPassword(line))
        }
    }

    struct NewToken: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "new-token",
            abstract: "Make an API token: the token (give it to the program, once) and its SHA-256 (for users.yaml)."
        )

        func run() async throws {
            let (token, digest) = ConsoleAuthenticator.newToken()
            print("token:  \(token)")
            print("sha256: \(digest)")
        }
    }
}
