import Foundation
import GatepostMIME
import Testing
@testable import GatepostCore

func makeTemporaryDirectory(_ label: String = "core") throws -> String {
    let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("gatepost-\(label)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite struct SiteLoaderTests {
    let loader = SiteLoader(environment: ["ACME_PASSWORD": "s3cret"])

    func load(_ text: String, name: String = "acme.yaml") throws -> RemoteSite? {
        try loader.parse(text, file: "sites/\(name)")
    }

    func expectError(_ text: String, line: Int?, field: String?, containing message: String) {
        do {
            _ = try load(text)
            Issue.record("expected an error for field \(field ?? "-")")
        } catch let error as SiteConfigurationError {
            #expect(error.file == "sites/acme.yaml")
            #expect(error.line == line)
            #expect(error.field == field)
            #expect(error.message.contains(message), "\(error.message)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func fullSiteFile() throws {
        let site = try #require(try load("""
        kind: remote-site
        description: ACME purchase orders
        enabled: false
        pop3:
          host: pop.acme.example
          security: starttls
          user: orders
          password: ${ACME_PASSWORD}
          auth: [plain, user]
        poll:
          interval: 5m
          delete_after_retrieve: false
          max_message_size: 20MiB
        smtp:
          host: smtp.acme.example
          from: gateway@ours.example
        application: orders
        routes:
          - {type: XFER, file_name: "*.csv", application: billing}
        """))
        #expect(site.name == "acme")
        #expect(site.enabled == false)
        #expect(site.pop3.port == 110)
        #expect(site.pop3.security == .starttls)
        #expect(try site.pop3.password?.resolve() == "s3cret")
        #expect("\(String(describing: site.pop3.password))".contains("s3cret") == false)
        #expect(site.pop3.auth == [.plain, .user])
        #expect(site.poll.interval == .seconds(300))
        #expect(site.poll.deleteAfterRetrieve == false)
        #expect(site.poll.maxMessageSize == 20 << 20)
        #expect(site.smtp?.port == 465)
        #expect(site.routes.first?.application == "billing")
        #expect(site.routes.first?.type == .xfer)
    }

    @Test func parserLimitsPerSite() throws {
        let site = try #require(try load("""
        pop3: {host: pop.acme.example, user: orders, password: x}
        limits:
          max_message_size: 50MiB
          max_header_size: 64KiB
          max_line_length: 8KiB
          max_depth: 5
          max_parts: 100
        """))
        #expect(site.poll.limits == MIMELimits(
            maxHeaderBytes: 64 << 10, maxHeaderLineLength: 8 << 10, maxDepth: 5, maxParts: 100, maxMessageSize: 50 << 20
        ))
        expectError("""
        pop3: {host: pop.acme.example, user: orders, password: x}
        limits:
          max_depth: 0
        """, line: 3, field: "limits.max_depth", containing: "1")
        expectError("""
        pop3: {host: pop.acme.example, user: orders, password: x}
        limits:
          max_nesting: 3
        """, line: 3, field: "limits.max_nesting", containing: "unknown")
    }

    @Test func defaultsAreSecure() throws {
        let site = try #require(try load("pop3: {host: h, user: u, password: p}"))
        #expect(site.pop3.security == .tls)
        #expect(site.pop3.port == 995)
        #expect(site.pop3.tls.verify)
        #expect(!site.pop3.allowPlaintextPassword)
        #expect(site.enabled)
    }

    @Test func errorsNameFileLineAndField() {
        expectError("pop3:\n  host: h\n  user: u\n  port: 99999\n", line: 4, field: "pop3.port", containing: "1 to 65535")
        expectError("pop3:\n  host: h\n  user: u\n  prot: 995\n", line: 4, field: "pop3.prot", containing: "unknown field")
        expectError("pop3: {host: h, user: u, password: p}\nclassify:\n  text_only: maybe\n", line: 3, field: "classify.text_only", containing: "must be msg or recover")
        expectError("pop3: {host: h, user: u, password: p}\nclassify:\n  split: true\n", line: 3, field: "classify.split", containing: "unknown field")
        // An unset variable in a setting is an error; in a secret it is not (see below).
        expectError("pop3:\n  host: ${MISSING}\n  user: u\n", line: 2, field: "pop3.host", containing: "MISSING is not set")
        expectError("pop3:\n  user: u\n", line: 2, field: "pop3.host", containing: "required")
        expectError("pop3:\n  host: h\n  user: u\n  security: ssl3\n", line: 4, field: "pop3.security", containing: "tls, starttls or none")
        expectError("pop3:\n  host: h\n  user: u\npoll:\n  interval: soon\n", line: 5, field: "poll.interval", containing: "duration")
        expectError("name: ../evil\npop3: {host: h, user: u}\n", line: 1, field: "name", containing: "not a valid site name")
        expectError("pop3:\n  host: h\n  host: i\n  user: u\n", line: 2, field: "host", containing: "twice")
        expectError("pop3: [\n", line: 2, field: nil, containing: "not valid YAML")
    }

    @Test func everyErrorOfAFileIsNamedInOneRun() throws {
        let dir = try makeTemporaryDirectory()
        try """
        pop3:
          host: h
          user: u
          port: many
          security: ssl3
        poll:
          interval: soon
        smtp: {host: s, from: not-an-address}
        routes:
          - {type: FAX, application: a}
          - {subject: '(a)\\1', application: b}
        colour: blue
        """.write(toFile: dir + "/acme.yaml", atomically: true, encoding: .utf8)
        let directory = try loader.loadDirectory(dir)
        #expect(directory.sites.isEmpty)
        let fields = directory.errors.map { $0.field ?? "-" }
        #expect(Set(fields) == ["colour", "pop3.port", "pop3.security", "poll.interval", "smtp.from", "routes[0].type", "routes[1].subject"], "\(directory.errors.map(\.description))")
        #expect(directory.errors.allSatisfy { $0.file == dir + "/acme.yaml" && $0.line != nil })
    }

    @Test func aTabIsNamedAsATab() throws {
        let dir = try makeTemporaryDirectory()
        try "pop3:\n\thost: h\n  user: u\n".write(toFile: dir + "/tabbed.yaml", atomically: true, encoding: .utf8)
        let errors = try loader.loadDirectory(dir).errors
        #expect(errors.map(\.description) == ["\(dir)/tabbed.yaml:2: a tab at column 1: YAML indents with spaces only"])
    }

    @Test func aSecretThatCannotBeHadLeavesTheSiteLoadable() throws {
        let dir = try makeTemporaryDirectory()
        try "pop3: {host: h, user: u, password: \"${NOT_SET_ANYWHERE}\"}\n".write(toFile: dir + "/env.yaml", atomically: true, encoding: .utf8)
        try "pop3: {host: h, user: u, password_file: missing.secret}\n".write(toFile: dir + "/file.yaml", atomically: true, encoding: .utf8)
        let directory = try loader.loadDirectory(dir)
        #expect(directory.errors.isEmpty)
        #expect(directory.sites.map(\.name) == ["env", "file"])
        let env = try #require(directory.site(named: "env"))
        #expect(env.unavailableSecrets == ["\(dir)/env.yaml:1: pop3.password: environment variable NOT_SET_ANYWHERE is not set"])
        #expect(throws: SecretUnavailable.self) { try env.pop3.password?.resolve() }
        let file = try #require(directory.site(named: "file"))
        #expect(file.unavailableSecrets == ["cannot read the secret file \(dir)/missing.secret"])
        // Read when needed: once the file is there, the secret is.
        try "now-there\n".write(toFile: dir + "/missing.secret", atomically: true, encoding: .utf8)
        #expect(try file.pop3.password?.resolve() == "now-there")
        #expect(file.unavailableSecrets.isEmpty)
    }

    @Test func passwordFileIsReadRelativeToTheSiteFile() throws {
        let dir = try makeTemporaryDirectory()
        try "from-file\n".write(toFile: dir + "/acme.secret", atomically: true, encoding: .utf8)
        try "pop3: {host: h, user: u, password_file: acme.secret}\n".write(toFile: dir + "/acme.yaml", atomically: true, encoding: .utf8)
        let site = try #require(try loader.loadFile(dir + "/acme.yaml"))
        #expect(try site.pop3.password?.resolve() == "from-file")
    }

    @Test func btpMailDestinationWorksAsIs() throws {
        let site = try #require(try load("""
        {
          "Name": "partner-btp",
          "Type": "MAIL",
          "Authentication": "BasicAuthentication",
          "ProxyType": "Internet",
          "mail.user": "edi@partner.example",
          "mail.password": "${ACME_PASSWORD}",
          "mail.pop3s.host": "pop.partner.example",
          "mail.pop3s.port": "995",
          "mail.transport.protocol": "smtps",
          "mail.smtps.host": "smtp.partner.example",
          "mail.smtps.port": "465"
        }
        """, name: "partner.json"))
        #expect(site.name == "partner-btp")
        #expect(site.pop3.host == "pop.partner.example")
        #expect(site.pop3.port == 995)
        #expect(site.pop3.security == .tls)
        #expect(site.pop3.user == "edi@partner.example")
        #expect(try site.pop3.password?.resolve() == "s3cret")
        #expect(site.smtp?.host == "smtp.partner.example")
        #expect(site.smtp?.security == .tls)
    }

    @Test func multitenantSitesBecomeOneSitePerTenant() throws {
        let dir = try makeTemporaryDirectory()
        try """
        name: shop
        tenants: [alpha, beta-2]
        pop3:
          host: pop.${tenant}.example
          user: edi-${tenant}
          password: ${ACME_PASSWORD}
        """.write(toFile: dir + "/shop.yaml", atomically: true, encoding: .utf8)
        let directory = try loader.loadDirectory(dir)
        #expect(directory.errors.isEmpty, "\(directory.errors)")
        #expect(directory.sites.map(\.name) == ["shop-alpha", "shop-beta-2"])
        #expect(directory.sites.map(\.pop3.host) == ["pop.alpha.example", "pop.beta-2.example"])
        #expect(directory.sites.map(\.pop3.user) == ["edi-alpha", "edi-beta-2"])
        #expect(directory.sites.allSatisfy { (try? $0.pop3.password?.resolve()) == "s3cret" })
        expectError("tenants: [\"a/b\"]\npop3: {host: h, user: u}\n", line: 1, field: "tenants", containing: "not a valid tenant")
    }

    @Test func localSiteIsNotARemoteSite() throws {
        #expect(try load("kind: local-site\nname: ours\n") == nil)
    }

    @Test func directoryKeepsGoodSitesAndReportsBadFiles() throws {
        let dir = try makeTemporaryDirectory()
        try "pop3: {host: h, user: u}\n".write(toFile: dir + "/good.yaml", atomically: true, encoding: .utf8)
        try "pop3: {host: h, user: u, port: x}\n".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        try "not a site".write(toFile: dir + "/README.txt", atomically: true, encoding: .utf8)
        let directory = try loader.loadDirectory(dir)
        #expect(directory.sites.map(\.name) == ["good"])
        #expect(directory.errors.count == 1)
        #expect(directory.errors.first?.description.contains("bad.yaml:1: pop3.port") == true)
    }

    @Test func smtpReadTimeoutIsASiteSetting() throws {
        let withTimeout = try #require(try load("pop3: {host: h, user: u, password: p}\nsmtp: {host: s, read_timeout: 45s}\n"))
        #expect(withTimeout.smtp?.readTimeout == .seconds(45))
        #expect(try #require(try load("pop3: {host: h, user: u, password: p}\nsmtp: {host: s}\n")).smtp?.readTimeout == .seconds(300))
    }

    @Test func acknowledgmentTimeoutAndDeliveryReportsAreSmtpSettings() throws {
        let site = try #require(try load("pop3: {host: h, user: u, password: p}\nsmtp: {host: s, ack_timeout: 4h, delivery_reports: failures}\n"))
        #expect(site.smtp?.acknowledgmentTimeout == .seconds(4 * 3600))
        #expect(site.smtp?.deliveryReports == .failures)
        let defaults = try #require(try load("pop3: {host: h, user: u, password: p}\nsmtp: {host: s}\n"))
        #expect(defaults.smtp?.acknowledgmentTimeout == nil, "never overdue unless the site says when")
        #expect(defaults.smtp?.deliveryReports == .all)
        expectError("pop3: {host: h, user: u, password: p}\nsmtp:\n  host: s\n  delivery_reports: sometimes\n",
                    line: 4, field: "smtp.delivery_reports", containing: "all, failures or none")
        expectError("pop3: {host: h, user: u, password: p}\nsmtp:\n  host: s\n  ack_timeout: soon\n",
                    line: 4, field: "smtp.ack_timeout", containing: "positive duration")
    }

    @Test func siteNamesThatDifferOnlyByCaseAreRefused() throws {
        let dir = try makeTemporaryDirectory()
        try "pop3: {host: h, user: u}\n".write(toFile: dir + "/Acme.yaml", atomically: true, encoding: .utf8)
        try "pop3: {host: h, user: u}\n".write(toFile: dir + "/acme.yaml", atomically: true, encoding: .utf8)
        let directory = try loader.loadDirectory(dir)
        #expect(directory.sites.map(\.name) == ["Acme"])
        #expect(directory.errors.map(\.description) == ["\(dir)/acme.yaml: name: site `acme` differs from `Acme` (\(dir)/Acme.yaml) only by case"])
    }

    @Test func theShippedExamplesLoad() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let loader = SiteLoader(environment: ["ACME_POP3_PASSWORD": "x", "ACME_SMTP_PASSWORD": "y", "PARTNER_PASSWORD": "z"])
        let directory = try loader.loadDirectory(root.appendingPathComponent("sites").path)
        #expect(directory.errors.isEmpty, "\(directory.errors)")
        #expect(directory.sites.map(\.name) == ["acme"])
        #expect(directory.sites.first?.enabled == false)
        let btp = try #require(try loader.loadFile(root.appendingPathComponent("docs/examples/btp-mail-destination.json").path))
        #expect(btp.name == "partner-btp")
        #expect(btp.pop3.security == .tls)
    }
}

@Suite struct SafeFileNameTests {
    @Test(arguments: [
        ("../../etc/passwd", "passwd"),
        ("C:\\Windows\\system.ini", "system.ini"),
        ("..", "attachment"),
        ("", "attachment"),
        (".bashrc", "bashrc"),
        ("CON.txt", "_CON.txt"),
        ("a\u{0}b\u{7}c.csv", "abc.csv"),
        ("re\u{0301}sume\u{0301}.pdf", "r\u{e9}sum\u{e9}.pdf"),
        ("what?.txt", "what.txt"),
    ])
    func sanitizes(input: String, expected: String) {
        #expect(SafeFileName.make(input) == expected)
    }

    @Test func longNamesKeepTheirExtension() {
        let name = SafeFileName.make(String(repeating: "ä", count: 300) + ".csv")
        #expect(name.utf8.count <= 200)
        #expect(name.hasSuffix(".csv"))
    }

    @Test func collisionsGetASuffix() {
        #expect(SafeFileName.unique("a.csv", avoiding: ["a.csv", "a (2).csv"]) == "a (3).csv")
        #expect(SafeFileName.unique("README", avoiding: ["README"]) == "README (2)")
    }
}
