import Crypto
import Foundation
import NIOSSL
import X509

/// A throwaway CA made in-process, with server certificates on demand and one client
/// certificate, as PEM files a site's `tls:` can name: TLS is tested with real verification
/// (chain and host name), as sites configure it.
public struct TestPKI {
    public let directory: String
    public let caFile: String
    public let clientCertificateFile: String
    public let clientKeyFile: String
    private let caCertificate: Certificate
    private let caKey: P256.Signing.PrivateKey

    public init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("gatepost-pki-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName("Gatepost Test CA") }
        let now = Date()
        caCertificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 3600,
            issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true))
            },
            issuerPrivateKey: .init(caKey)
        )
        caFile = directory + "/ca.pem"
        clientCertificateFile = directory + "/client.pem"
        clientKeyFile = directory + "/client.key"
        try Self.write(try caCertificate.serializeAsPEM().pemString, to: caFile)
        let clientKey = P256.Signing.PrivateKey()
        let client = try issue(name: "gatepost-client", key: clientKey, usage: .clientAuth)
        try Self.write(try client.serializeAsPEM().pemString, to: clientCertificateFile)
        try Self.write(clientKey.pemRepresentation, to: clientKeyFile)
    }

    private static func write(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    private func issue(name: String, key: P256.Signing.PrivateKey, usage: ExtendedKeyUsage.Usage) throws -> Certificate {
        let now = Date()
        return try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 3600,
            issuer: caCertificate.subject, subject: try DistinguishedName { CommonName(name) },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                SubjectAlternativeNames([.dnsName(name)])
                try ExtendedKeyUsage([usage])
            },
            issuerPrivateKey: .init(caKey)
        )
    }

    /// The endpoint's TLS: a certificate for `hostName`, and optionally a client certificate
    /// from this CA required.
    public func serverContext(hostName: String, requireClientCertificate: Bool = false) throws -> NIOSSLContext {
        let key = P256.Signing.PrivateKey()
        let certificate = try issue(name: hostName, key: key, usage: .serverAuth)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(try certificate.serializeAsPEM().pemString.utf8), format: .pem))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(key.pemRepresentation.utf8), format: .pem))
        )
        if requireClientCertificate {
            configuration.certificateVerification = .noHostnameVerification
            configuration.trustRoots = .file(caFile)
        }
        return try NIOSSLContext(configuration: configuration)
    }

    /// A client's TLS settings that trust this CA only.
    public func clientTLS() -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.trustRoots = .file(caFile)
        return tls
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}
