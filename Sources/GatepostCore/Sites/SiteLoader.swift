import GatepostMIME
import Foundation
import GatepostCatalog
import GatepostPOP3
import Yams

/// What `sites/` holds: the usable sites, and an error for each file that is not usable. One bad
/// file does not stop the others from being polled.
public struct SiteDirectory: Sendable {
    public var sites: [RemoteSite]
    public var errors: [SiteConfigurationError]
    /// `sites/local.yaml`; nil when there is none, and then nothing is routed.
    public var local: LocalSite?

    public init(sites: [RemoteSite], errors: [SiteConfigurationError], local: LocalSite?) {
        self.sites = sites
        self.errors = errors
        self.local = local
    }

    public func site(named name: String) -> RemoteSite? {
        sites.first { $0.name == name }
    }
}

/// Collects the errors of a site file as it is read, so that one run names them all.
final class ConfigProblems {
    private(set) var errors: [SiteConfigurationError] = []

    /// `body`'s result, or nil after noting its error.
    @discardableResult
    func attempt<T>(_ body: () throws -> T) -> T? {
        do {
            return try body()
        } catch let error as SiteConfigurationError {
            errors += error.all
        } catch {
            errors.append(SiteConfigurationError(file: "", line: nil, field: nil, message: "\(error)"))
        }
        return nil
    }

    /// Throws what was collected: the first error, carrying the others.
    func finish() throws {
        guard var first = errors.first else { return }
        first.others = Array(errors.dropFirst())
        throw first
    }
}

/// Reads Remote Site files: Gatepost YAML (`kind: remote-site`) or an SAP BTP-style MAIL
/// destination (JSON with `"Type": "MAIL"` and `mail.*` properties), taken as it is.
public struct SiteLoader: Sendable {
    public var environment: [String: String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    static let siteFileExtensions: Set<String> = ["yaml", "yml", "json"]

    public func loadDirectory(_ directory: String) throws -> SiteDirectory {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw SiteConfigurationError(file: directory, line: nil, field: nil, message: "the sites folder does not exist (use --sites DIR or GATEPOST_SITES)")
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { Self.siteFileExtensions.contains(($0 as NSString).pathExtension.lowercased()) && !$0.hasPrefix(".") }
            .sorted()
        var sites: [RemoteSite] = []
        var errors: [SiteConfigurationError] = []
        var local: LocalSite?
        var seen: [String: (name: String, file: String)] = [:]
        for name in names {
            let path = (directory as NSString).appendingPathComponent(name)
            do {
                let remotes: [RemoteSite]
                switch try loadDocument(path) {
                case .local(let localSite):
                    if let local {
                        throw SiteConfigurationError(file: path, line: nil, field: "kind", message: "a second local-site (the first is \(local.sourceFile))")
                    }
                    local = localSite
                    continue
                case .remote(let remote):
                    remotes = [remote]
                case .tenants(let perTenant):
                    remotes = perTenant
                }
                for site in remotes {
                    // Names that differ only by case would share a folder on a case-insensitive
                    // file system (a mounted share, a backup on another system).
                    if let other = seen[site.name.lowercased()] {
                        let same = other.name == site.name
                        throw SiteConfigurationError(
                            file: path, line: nil, field: "name",
                            message: same ? "site `\(site.name)` is already defined in \(other.file)"
                                : "site `\(site.name)` differs from `\(other.name)` (\(other.file)) only by case"
                        )
                    }
                    seen[site.name.lowercased()] = (site.name, path)
                }
                sites += remotes
            } catch let error as SiteConfigurationError {
                errors += error.all
            }
        }
        // With a Local Site in place, every application a site names must exist there.
        if let local {
            sites = sites.filter { site in
                for reference in site.applicationReferences where local.application(named: reference.name) == nil {
                    errors.append(SiteConfigurationError(
                        file: site.sourceFile, line: reference.line, field: reference.field,
                        message: "no application `\(reference.name)` in \(local.sourceFile)"
                    ))
                    return false
                }
                return true
            }
        }
        return SiteDirectory(sites: sites, errors: errors, local: local)
    }

    /// A site file holds a Remote Site or the Local Site.
    public enum Document: Sendable {
        case remote(RemoteSite)
        /// A multitenant site: one Remote Site per tenant.
        case tenants([RemoteSite])
        case local(LocalSite)
    }

    /// Loads one Remote Site file (the first tenant's site of a multitenant one); nil for the Local Site.
    public func loadFile(_ path: String) throws(SiteConfigurationError) -> RemoteSite? {
        switch try loadDocument(path) {
        case .remote(let site): site
        case .tenants(let sites): sites.first
        case .local: nil
        }
    }

    public func loadDocument(_ path: String) throws(SiteConfigurationError) -> Document {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw SiteConfigurationError(file: path, line: nil, field: nil, message: "cannot read the file: \(error.localizedDescription)")
        }
        do {
            return try parseDocument(text, file: path)
        } catch let error as SiteConfigurationError {
            throw error
        } catch {
            throw SiteConfigurationError(file: path, line: nil, field: nil, message: "\(error)")
        }
    }

    /// Parses a Remote Site; nil for the Local Site.
    public func parse(_ text: String, file: String) throws -> RemoteSite? {
        switch try parseDocument(text, file: file) {
        case .remote(let site): site
        case .tenants(let sites): sites.first
        case .local: nil
        }
    }

    public func parseDocument(_ text: String, file: String) throws -> Document {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            var problem = Self.syntaxError(error, file: file)
            // YAML's own words for a tab ("found character that cannot start any token") do
            // not say what to fix.
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            if let line = problem.line, line >= 1, line <= lines.count, let column = lines[line - 1].firstIndex(of: "\t") {
                let position = lines[line - 1].distance(from: lines[line - 1].startIndex, to: column) + 1
                problem.message = "a tab at column \(position): YAML indents with spaces only"
            }
            throw problem
        }
        guard let node else {
            throw SiteConfigurationError(file: file, line: nil, field: nil, message: "the file is empty")
        }
        let root = ConfigNode(node: node, path: "", file: file, environment: environment)
        let mapping = try root.mapping()
        let defaultName = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
        if let type = mapping["Type"], try type.rawString().uppercased() == "MAIL" {
            return .remote(try BTPMailDestination.site(from: mapping, defaultName: defaultName, loader: self))
        }
        let kind = try mapping["kind"]?.string() ?? "remote-site"
        switch kind {
        case "remote-site":
            guard let tenantsNode = mapping["tenants"] else {
                return .remote(try remoteSite(mapping, defaultName: defaultName))
            }
            // One site per tenant, `<site>-<tenant>`, with ${tenant} in every field (host,
            // user, token URL...) read as that tenant's subdomain.
            let tenants = try tenantsNode.stringList()
            guard !tenants.isEmpty else { throw tenantsNode.error("must list at least one tenant") }
            var sites: [RemoteSite] = []
            for tenant in tenants {
                guard tenant.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                    throw tenantsNode.error("`\(tenant)` is not a valid tenant subdomain")
                }
                var perTenant = self
                perTenant.environment["tenant"] = tenant
                let node = ConfigNode(node: node, path: "", file: file, environment: perTenant.environment)
                var site = try perTenant.remoteSite(try node.mapping(), defaultName: defaultName)
                site.name = "\(site.name)-\(tenant)"
                try Self.validateSiteName(site.name, node: mapping["name"] ?? root)
                sites.append(site)
            }
            return .tenants(sites)
        case "local-site":
            return .local(try localSite(mapping, defaultName: defaultName))
        default:
            throw mapping["kind"]?.error("must be remote-site or local-site") ?? root.error("unknown kind")
        }
    }

    static func syntaxError(_ error: YamlError, file: String) -> SiteConfigurationError {
        var line: Int?
        var problem = "\(error)"
        switch error {
        case .scanner(let context, let reason, let mark, _):
            line = mark.line
            problem = [context?.text, reason].compactMap { $0 }.joined(separator: " ")
        case .parser(let context, let reason, let mark, _):
            line = mark.line
            problem = [context?.text, reason].compactMap { $0 }.joined(separator: " ")
        case .composer(let context, let reason, let mark, _):
            line = mark.line
            problem = [context?.text, reason].compactMap { $0 }.joined(separator: " ")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return SiteConfigurationError(
                file: file, line: context.mark.line, field: duplicates.first,
                message: "appears twice in the same mapping"
            )
        default:
            break
        }
        return SiteConfigurationError(file: file, line: line, field: nil, message: "not valid YAML: \(problem)")
    }

    /// Every error of the file is collected (each section, each POP3 field), so that one run
    /// names them all, not one at a time.
    func remoteSite(_ root: ConfigMapping, defaultName: String) throws -> RemoteSite {
        let problems = ConfigProblems()
        problems.attempt { try root.rejectUnknownKeys(["kind", "name", "description", "enabled", "pop3", "poll", "limits", "classify", "smtp", "application", "routes", "tenants", "expect", "probe", "smime"]) }
        let name = problems.attempt { try root["name"]?.nonEmptyString() }.flatMap { $0 } ?? defaultName
        problems.attempt { try Self.validateSiteName(name, node: root["name"] ?? root.owner) }

        let pop3Map = problems.attempt { try root.require("pop3").mapping() } ?? ConfigMapping(owner: root.owner, entries: [])
        problems.attempt { try pop3Map.rejectUnknownKeys([
            "host", "port", "security", "user", "password", "password_file", "password_expires", "auth", "allow_plaintext_password",
            "tls", "oauth2", "connect_timeout", "read_timeout", "address",
        ]) }
        let security = problems.attempt { try securityValue(pop3Map["security"], default: .tls) } ?? .tls
        let defaultPort = security == .tls ? 995 : 110
        var auth: [POP3AuthMechanism] = []
        if let node = pop3Map["auth"] { problems.attempt {
            for name in try node.stringList() {
                guard let mechanism = POP3AuthMechanism(rawValue: name.lowercased()) else {
                    throw node.error("`\(name)` is not a known mechanism (known: \(POP3AuthMechanism.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                auth.append(mechanism)
            }
        } }
        let pop3TLS = problems.attempt { try tlsSettings(pop3Map["tls"]) } ?? RemoteSite.TLS(caFile: nil, clientCertificate: nil, clientKey: nil, verify: true)
        var pop3 = RemoteSite.POP3(
            host: problems.attempt { try pop3Map.require("host").nonEmptyString() } ?? "",
            port: problems.attempt { try pop3Map["port"]?.int(in: 1...65535) }.flatMap { $0 } ?? defaultPort,
            security: security,
            user: problems.attempt { try pop3Map.require("user").nonEmptyString() } ?? "",
            password: problems.attempt { try secret(pop3Map, key: "password") }.flatMap { $0 },
            auth: auth,
            allowPlaintextPassword: problems.attempt { try pop3Map["allow_plaintext_password"]?.bool() }.flatMap { $0 } ?? false,
            tls: pop3TLS,
            oauth2: problems.attempt { try oauth2Settings(pop3Map["oauth2"], tls: pop3TLS) }.flatMap { $0 },
            connectTimeout: problems.attempt { try pop3Map["connect_timeout"]?.duration() }.flatMap { $0 } ?? .seconds(15),
            readTimeout: problems.attempt { try pop3Map["read_timeout"]?.duration() }.flatMap { $0 } ?? .seconds(60)
        )
        if let addressNode = pop3Map["address"] { problems.attempt {
            let text = try addressNode.nonEmptyString()
            guard (try? MailAddress(text)) != nil else { throw addressNode.error("must be a mail address such as orders@ours.example") }
            pop3.address = text
        } }

        var poll = RemoteSite.Poll(interval: .seconds(300), deleteAfterRetrieve: true, maxMessageSize: 200 << 20)
        if let pollNode = root["poll"] { problems.attempt {
            let pollMap = try pollNode.mapping()
            try pollMap.rejectUnknownKeys(["interval", "delete_after_retrieve", "max_message_size", "commit_batch", "stuck_after"])
            poll.interval = try pollMap["interval"]?.duration() ?? poll.interval
            poll.deleteAfterRetrieve = try pollMap["delete_after_retrieve"]?.bool() ?? poll.deleteAfterRetrieve
            poll.maxMessageSize = try pollMap["max_message_size"]?.byteSize() ?? poll.maxMessageSize
            poll.commitBatch = try pollMap["commit_batch"]?.int(in: 1...1000) ?? poll.commitBatch
            poll.stuckAfter = try pollMap["stuck_after"]?.int(in: 1...1000) ?? poll.stuckAfter
        } }
        if let limitsNode = root["limits"] { problems.attempt {
            let limitsMap = try limitsNode.mapping()
            try limitsMap.rejectUnknownKeys(["max_message_size", "max_header_size", "max_line_length", "max_depth", "max_parts"])
            var limits = poll.limits
            limits.maxMessageSize = try limitsMap["max_message_size"]?.byteSize() ?? limits.maxMessageSize
            limits.maxHeaderBytes = try limitsMap["max_header_size"].map { Int(try $0.byteSize()) } ?? limits.maxHeaderBytes
            limits.maxHeaderLineLength = try limitsMap["max_line_length"].map { Int(try $0.byteSize()) } ?? limits.maxHeaderLineLength
            limits.maxDepth = try limitsMap["max_depth"]?.int(in: 1...100) ?? limits.maxDepth
            limits.maxParts = try limitsMap["max_parts"]?.int(in: 2...100_000) ?? limits.maxParts
            poll.limits = limits
        } }

        var classification = ClassificationOptions()
        if let classifyNode = root["classify"] { problems.attempt {
            let classifyMap = try classifyNode.mapping()
            try classifyMap.rejectUnknownKeys(["text_only", "bare_file", "split_attachments"])
            classification.textOnlyIsMessage = try choice(classifyMap["text_only"], yes: "msg", no: "recover") ?? false
            classification.bareFileIsTransfer = try choice(classifyMap["bare_file"], yes: "xfer", no: "recover") ?? false
            classification.splitAttachments = try classifyMap["split_attachments"]?.bool() ?? false
        } }

        var smtp: RemoteSite.SMTP?
        if let smtpNode = root["smtp"] { problems.attempt { smtp = try smtpSettings(smtpNode) } }

        var routes: [RemoteSite.Route] = []
        if let routesNode = root["routes"], let routeNodes = problems.attempt({ try routesNode.sequence() }) {
            for routeNode in routeNodes { problems.attempt {
                let routeMap = try routeNode.mapping()
                try routeMap.rejectUnknownKeys(["type", "file_name", "sender", "subject", "application"])
                var type: TransferRecord.Kind?
                if let typeNode = routeMap["type"] {
                    guard let kind = TransferRecord.Kind(rawValue: try typeNode.string().uppercased()), kind != .probe else {
                        throw typeNode.error("must be XFER, MSG or EERP")
                    }
                    type = kind
                }
                var subject: String?
                if let subjectNode = routeMap["subject"] {
                    let pattern = try subjectNode.nonEmptyString()
                    if let problem = RoutePatterns.subjectPatternProblem(pattern) { throw subjectNode.error("`\(pattern)` \(problem)") }
                    subject = pattern
                }
                let applicationNode = try routeMap.require("application")
                routes.append(RemoteSite.Route(
                    type: type,
                    fileName: try routeMap["file_name"]?.nonEmptyString(),
                    sender: try routeMap["sender"]?.nonEmptyString(),
                    subject: subject,
                    application: try applicationNode.nonEmptyString(),
                    line: applicationNode.line,
                    field: applicationNode.path
                ))
            } }
        }
        let description = problems.attempt { try root["description"]?.string() }.flatMap { $0 }
        let enabled = problems.attempt { try root["enabled"]?.bool() }.flatMap { $0 } ?? true
        let application = problems.attempt { try root["application"]?.nonEmptyString() }.flatMap { $0 }
        let expectations = problems.attempt { try expectedArrivals(root["expect"]) } ?? []
        var probe: RemoteSite.ProbeSettings?
        if let probeNode = root["probe"] { problems.attempt {
            let map = try probeNode.mapping()
            try map.rejectUnknownKeys(["every", "deadline", "to"])
            guard let smtp, smtp.from != nil else { throw probeNode.error("needs the site's smtp: (with from:) to send probes") }
            let toNode = map["to"]
            guard let to = try toNode?.nonEmptyString() ?? pop3.address else {
                throw probeNode.error("needs to: (the address of the mailbox this site polls), or pop3.address")
            }
            if (try? MailAddress(to)) == nil { throw (toNode ?? probeNode).error("`\(to)` is not a mail address") }
            let every = try map["every"]?.duration() ?? .seconds(3600)
            let deadline = try map["deadline"]?.duration() ?? .seconds(900)
            guard deadline < every else { throw (map["deadline"] ?? probeNode).error("must be shorter than every (one probe out at a time)") }
            probe = RemoteSite.ProbeSettings(every: every, deadline: deadline, to: to)
        } }
        var smime: SMIMESettings?
        if let smimeNode = root["smime"] { problems.attempt { smime = try smimeSettings(smimeNode) } }
        try problems.finish()

        var site = RemoteSite(
            name: name,
            description: description,
            enabled: enabled,
            pop3: pop3,
            poll: poll,
            smtp: smtp,
            application: application,
            applicationLine: root["application"]?.line,
            routes: routes,
            sourceFile: root.owner.file
        )
        site.classification = classification
        site.expectations = expectations
        site.probe = probe
        site.smime = smime
        return site
    }

    /// One of two words: true for `yes`, false for `no`, nil when absent.
    /// An `smtp:` block: a remote site's, or an e-mail alert channel's.
    func smtpSettings(_ smtpNode: ConfigNode) throws -> RemoteSite.SMTP {
        let smtpMap = try smtpNode.mapping()
        try smtpMap.rejectUnknownKeys([
            "host", "port", "security", "from", "user", "password", "password_file", "password_expires", "tls", "allow_plaintext_password",
            "acknowledgments", "acknowledge_any_address", "oauth2", "read_timeout", "ack_timeout",
            "delivery_reports",
        ])
        let smtpSecurity = try securityValue(smtpMap["security"], default: .tls)
        var smtp = RemoteSite.SMTP(
            host: try smtpMap.require("host").nonEmptyString(),
            port: try smtpMap["port"]?.int(in: 1...65535) ?? (smtpSecurity == .tls ? 465 : 587),
            security: smtpSecurity,
            from: try smtpMap["from"]?.nonEmptyString(),
            user: try smtpMap["user"]?.nonEmptyString(),
            password: try secret(smtpMap, key: "password")
        )
        let smtpTLS = try tlsSettings(smtpMap["tls"])
        smtp.tls = smtpTLS
        smtp.allowPlaintextPassword = try smtpMap["allow_plaintext_password"]?.bool() ?? false
        smtp.acknowledgments = try smtpMap["acknowledgments"]?.bool() ?? true
        smtp.acknowledgeAnyAddress = try smtpMap["acknowledge_any_address"]?.bool() ?? false
        smtp.oauth2 = try oauth2Settings(smtpMap["oauth2"], tls: smtpTLS)
        smtp.readTimeout = try smtpMap["read_timeout"]?.duration() ?? .seconds(300)
        smtp.acknowledgmentTimeout = try smtpMap["ack_timeout"]?.duration()
        if let reportsNode = smtpMap["delivery_reports"] {
            guard let reports = RemoteSite.DeliveryReports(rawValue: try reportsNode.string().lowercased()) else {
                throw reportsNode.error("must be all, failures or none")
            }
            smtp.deliveryReports = reports
        }
        if let fromNode = smtpMap["from"], (try? MailAddress(try fromNode.string())) == nil {
            throw fromNode.error("must be a mail address such as gateway@example.com")
        }
        return smtp
    }

    func choice(_ node: ConfigNode?, yes: String, no: String) throws -> Bool? {
        guard let node else { return nil }
        switch try node.string().lowercased() {
        case yes: return true
        case no: return false
        default: throw node.error("must be \(yes) or \(no)")
        }
    }

    static func validateSiteName(_ name: String, node: ConfigNode) throws {
        // The name becomes a folder under spool/in/: no separators, no dot-names, nothing exotic.
        let allowed = name.unicodeScalars.allSatisfy {
            ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" || $0 == ".") && $0.isASCII
        }
        guard allowed, !name.hasPrefix("."), name.count <= 64 else {
            throw ConfigNode(node: node.node, path: "name", file: node.file, environment: [:])
                .error("`\(name)` is not a valid site name (letters, digits, '-', '_', '.', at most 64, not starting with '.')")
        }
    }

    func securityValue(_ node: ConfigNode?, default defaultValue: RemoteSite.POP3.SecurityMode) throws -> RemoteSite.POP3.SecurityMode {
        guard let node else { return defaultValue }
        let text = try node.string().lowercased()
        switch text {
        case "tls", "ssl", "implicit": return .tls
        case "starttls", "stls": return .starttls
        case "none", "plain": return .none
        default: throw node.error("must be tls, starttls or none")
        }
    }

    /// `key: ${ENV}` (or inline) or `key_file: path` (relative to the site file), not both.
    func secret(_ mapping: ConfigMapping, key: String) throws -> Secret? {
        guard var secret = try secretSource(mapping, key: key) else {
            if let expiresNode = mapping["\(key)_expires"] { throw expiresNode.error("says when \(key) expires, but there is no \(key)") }
            return nil
        }
        if let expiresNode = mapping["\(key)_expires"] {
            guard let date = StrictDate.parse(try expiresNode.string()) else {
                throw expiresNode.error("must be a date such as 2027-03-31")
            }
            secret.expires = date
        }
        return secret
    }

    private func secretSource(_ mapping: ConfigMapping, key: String) throws -> Secret? {
        let inline = mapping[key]
        let fileNode = mapping["\(key)_file"]
        if let inline, fileNode != nil {
            throw inline.error("give either \(key) or \(key)_file, not both")
        }
        if let inline {
            // An unset variable leaves the secret unavailable, not the site: it is needed only
            // to connect (see ``Secret``).
            if let missing = inline.unsetVariables().first {
                return Secret(unavailable: inline.error("environment variable \(missing) is not set").description)
            }
            return Secret(try inline.string())
        }
        if let fileNode {
            var path = try fileNode.nonEmptyString()
            if !path.hasPrefix("/") {
                path = ((fileNode.file as NSString).deletingLastPathComponent as NSString).appendingPathComponent(path)
            }
            return Secret(file: path)
        }
        return nil
    }

    /// `tls` is the mail connection's: the token endpoint is reached with the same trust roots
    /// and client certificate.
    func oauth2Settings(_ node: ConfigNode?, tls: RemoteSite.TLS) throws -> OAuth2Settings? {
        guard let node else { return nil }
        let map = try node.mapping()
        try map.rejectUnknownKeys(["token_url", "client_id", "client_secret", "client_secret_file", "client_secret_expires", "scope", "allow_insecure_token_url"])
        guard let secret = try secret(map, key: "client_secret") else {
            throw node.error("needs client_secret or client_secret_file")
        }
        let urlNode = try map.require("token_url")
        let allowInsecure = try map["allow_insecure_token_url"]?.bool() ?? false
        return OAuth2Settings(
            tokenURL: try Self.tokenURL(try urlNode.nonEmptyString(), allowInsecure: allowInsecure, node: urlNode),
            clientID: try map.require("client_id").nonEmptyString(),
            clientSecret: secret,
            scope: try map["scope"]?.nonEmptyString(),
            tls: tls,
            allowInsecureTokenURL: allowInsecure
        )
    }

    /// An https URL, or http with the site's explicit opt-in: the client secret goes to it.
    static func tokenURL(
        _ text: String, allowInsecure: Bool, node: ConfigNode,
        remedy: String = "use https, or set allow_insecure_token_url: true (for a token endpoint on a trusted network only)"
    ) throws -> String {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty,
              scheme == "https" || scheme == "http" else {
            throw node.error("`\(text)` is not an https URL")
        }
        if scheme == "http" && !allowInsecure {
            throw node.error("`\(text)` would send the client secret in clear text; \(remedy)")
        }
        return text
    }

    func tlsSettings(_ node: ConfigNode?) throws -> RemoteSite.TLS {
        var tls = RemoteSite.TLS(caFile: nil, clientCertificate: nil, clientKey: nil, verify: true)
        guard let node else { return tls }
        let map = try node.mapping()
        try map.rejectUnknownKeys(["ca_file", "client_certificate", "client_key", "verify"])
        let base = (node.file as NSString).deletingLastPathComponent
        func path(_ key: String) throws -> String? {
            guard let child = map[key] else { return nil }
            var value = try child.nonEmptyString()
            if !value.hasPrefix("/") { value = (base as NSString).appendingPathComponent(value) }
            guard FileManager.default.isReadableFile(atPath: value) else { throw child.error("cannot read \(value)") }
            return value
        }
        tls.caFile = try path("ca_file")
        tls.clientCertificate = try path("client_certificate")
        tls.clientKey = try path("client_key")
        tls.verify = try map["verify"]?.bool() ?? true
        if (tls.clientCertificate == nil) != (tls.clientKey == nil) {
            throw node.error("client_certificate and client_key go together")
        }
        return tls
    }
}

extension RemoteSite.POP3 {
    public typealias SecurityMode = POP3ConnectionConfiguration.Security
}
