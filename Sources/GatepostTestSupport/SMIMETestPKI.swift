import Crypto
import Foundation
import GatepostCore
import X509

/// Keys and certificates for S/MIME tests, made by the `openssl` command (an independent tool,
/// as partners' gateways are), and a way to run `openssl cms` over files: what the tests
/// decrypt and verify is never produced by the code under test.
public struct SMIMETestPKI: Sendable {
    public enum KeyType: Sendable {
        case rsa
        case ec
    }

    /// One party's key and certificate files; `pkcs12File` holds both, under `pkcs12Password`.
    public struct Party: Sendable {
        public var name: String
        public var keyFile: String
        public var certificateFile: String
        public var pkcs12File: String
        public var pkcs12Password: String
        public var subject: String { "CN=\(name),O=Gatepost Tests" }
    }

    public struct OpenSSLFailure: Error, CustomStringConvertible {
        public var description: String
    }

    public let directory: String
    public let caKeyFile: String
    public let caFile: String

    public init(directory: String? = nil) async throws {
        let directory = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("gatepost-smime-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.directory = directory
        caKeyFile = directory + "/ca.key"
        caFile = directory + "/ca.pem"
        try await Self.openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", caKeyFile, "-out", caFile, "-days", "30", "-subj", "/O=Gatepost Tests/CN=Gatepost S-MIME Test CA"])
    }

    /// A key and a certificate issued by this CA, valid for 30 days, for `email` (its
    /// subjectAltName) when given, with `extensions` (openssl's `-extfile` lines, such as
    /// "extendedKeyUsage = serverAuth").
    public func issue(_ name: String, key type: KeyType = .rsa, email: String? = nil, extensions: [String] = []) async throws -> Party {
        let base = directory + "/" + name
        let party = Party(
            name: name, keyFile: base + ".key", certificateFile: base + ".pem", pkcs12File: base + ".p12", pkcs12Password: "p12-\(name)"
        )
        let keyArguments = type == .rsa ? ["-newkey", "rsa:2048"] : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        try await Self.openssl(["req", "-new"] + keyArguments + ["-nodes", "-keyout", party.keyFile, "-out", base + ".csr", "-subj", "/O=Gatepost Tests/CN=\(name)"])
        let lines = (email.map { ["subjectAltName = email:\($0)"] } ?? []) + extensions
        var extensionArguments: [String] = []
        if !lines.isEmpty {
            try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: base + ".ext"))
            extensionArguments = ["-extfile", base + ".ext"]
        }
        try await Self.openssl([
            "x509", "-req", "-in", base + ".csr", "-CA", caFile, "-CAkey", caKeyFile, "-CAcreateserial",
            "-days", "30", "-out", party.certificateFile,
        ] + extensionArguments)
        try await Self.openssl([
            "pkcs12", "-export", "-inkey", party.keyFile, "-in", party.certificateFile, "-certfile", caFile,
            "-out", party.pkcs12File, "-passout", "pass:\(party.pkcs12Password)",
        ])
        return party
    }

    /// A self-signed EC certificate that expired yesterday (openssl 3.0 cannot back-date one:
    /// made with swift-certificates), for the "expired signer" case.
    public func expired(_ name: String) throws -> Party {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName {
            OrganizationName("Gatepost Tests")
            CommonName(name)
        }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now - 30 * 86400, notValidAfter: now - 86400,
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions { Critical(BasicConstraints.notCertificateAuthority) },
            issuerPrivateKey: .init(key)
        )
        let base = directory + "/" + name
        let party = Party(name: name, keyFile: base + ".key", certificateFile: base + ".pem", pkcs12File: base + ".p12", pkcs12Password: "")
        try Data(key.pemRepresentation.utf8).write(to: URL(fileURLWithPath: party.keyFile))
        try Data(try certificate.serializeAsPEM().pemString.utf8).write(to: URL(fileURLWithPath: party.certificateFile))
        return party
    }

    public func path(_ name: String) -> String { directory + "/" + name }

    /// Runs `openssl` with `arguments` (waited for off the concurrency pool: key generation
    /// takes a while, and a blocked pool thread stalls every other test's timers); throws with
    /// its error output when it fails.
    @discardableResult
    public static func openssl(_ arguments: [String]) async throws -> String {
        let result = try await ChildProcess.run("/usr/bin/openssl", arguments, timeout: .seconds(120))
        guard result.status == 0, !result.timedOut else {
            throw OpenSSLFailure(description: "openssl \(arguments.prefix(2).joined(separator: " ")) failed (\(result.status)): \(result.stderr)")
        }
        return result.stdout
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}
