import Crypto
import Synchronization
import Foundation
import GatepostSMIME

/// A site's `smime:` block: our key and certificate (decrypting what the partner sends, signing
/// receipts and files), the partner's certificates or CA (verifying what it signs, encrypting
/// what we send), what a received message must be, and what we do when sending.
public struct SMIMESettings: Sendable, Hashable {
    /// What a received message must be; one that is not is RECOVER, never routed.
    public enum Requirement: String, Sendable, Hashable, CaseIterable {
        case none, signed, encrypted, both

        var needsSignature: Bool { self == .signed || self == .both }
        var needsEncryption: Bool { self == .encrypted || self == .both }
    }

    /// Our key: PEM key and certificate files, or one PKCS#12 file.
    public enum Key: Sendable, Hashable {
        case pem(key: String, certificate: String)
        case pkcs12(String)
    }

    public var key: Key?
    /// The password of the key (PEM) or of the PKCS#12 file.
    public var password: Secret?
    /// The partner's certificates, or the CA that issues them (files, PEM or DER).
    public var partnerCertificates: [String]
    /// Who may sign for the partner with a certificate a trusted CA issued (addresses, or
    /// subjects in RFC 2253 form): a CA vouches for a certificate, not for whose partner it is.
    /// Empty: the message's From address must be one the certificate is for (RFC 8550 3).
    public var partnerSigners: [String] = []
    public var require: Requirement
    /// Outbound defaults (`gatepost send` without --sign / --encrypt says these).
    public var sign: Bool
    public var encrypt: Bool
    public var cipher: String
    /// The digest of our signatures and the MIC we ask receipts for.
    public var digest: MICAlgorithm

    /// What `gatepost site show` says: requirements and defaults, then each certificate with its
    /// subject and expiry (read from the files; a PKCS#12 file is opened only with its password,
    /// when a message needs it).
    public func summary(now: Date = Date()) -> [String] {
        var lines = ["require \(require.rawValue); sending: \(sign ? "sign" : "no signature"), \(encrypt ? "encrypt (\(cipher))" : "not encrypted"); digest \(digest.rawValue)"]
        func describe(_ role: String, _ file: String) -> [String] {
            do {
                return try SMIMECertificate.load(file: file).map { certificate in
                    let expiry = certificate.notAfter.map { date in
                        (date < now ? "EXPIRED " : "expires ") + ISO8601DateFormatter().string(from: date)
                    } ?? "no expiry"
                    return "\(role): \(certificate.subject), \(expiry)"
                }
            } catch {
                return ["\(role): \(error)"]
            }
        }
        switch key {
        case .pem(_, let certificate): lines += describe("our certificate", certificate)
        case .pkcs12(let file): lines.append("our key and certificate: \(file) (PKCS#12)")
        case nil: lines.append("no key of ours: encrypted messages cannot be read, receipts not signed")
        }
        for file in partnerCertificates { lines += describe("partner", file) }
        if !partnerSigners.isEmpty { lines.append("signers (through a CA): \(partnerSigners.joined(separator: ", "))") }
        return lines
    }

    /// Why a verified signer does not speak for the partner, or nil when it does. A pinned
    /// certificate (one listed in partner_certificates) does. One a listed CA issued must be
    /// for S/MIME signing, and either named by partner_signers (an address it is for, or its
    /// subject) or, when none are listed, for an address the message is from: otherwise any
    /// customer of a public CA could sign as the partner.
    public func refusal(of signer: SignatureVerification.Signer, messageFrom senders: [String]) -> String? {
        if signer.isPinned { return nil }
        let name = "the signer's certificate (\(signer.subject)), trusted through a CA in smime.partner_certificates,"
        guard signer.isForSMIMESigning else {
            return "\(name) is not for S/MIME signing (its key usage or extended key usage says otherwise)"
        }
        let addresses = Set(signer.emails.map { $0.lowercased() })
        if !partnerSigners.isEmpty {
            let allowed = partnerSigners.contains { entry in
                addresses.contains(entry.lowercased()) || entry.caseInsensitiveCompare(signer.subject) == .orderedSame
            }
            return allowed ? nil : "\(name) is not among smime.partner_signers (\(partnerSigners.joined(separator: ", ")))"
        }
        if senders.contains(where: { addresses.contains($0.lowercased()) }) { return nil }
        let holds = signer.emails.isEmpty ? "names no address" : "is for \(signer.emails.joined(separator: ", "))"
        return "\(name) \(holds), not for the message's From (\(senders.isEmpty ? "none" : senders.joined(separator: ", "))): "
            + "list the partner's own certificate in smime.partner_certificates, or the addresses it signs as in smime.partner_signers"
    }

    /// The ciphers that can be named: what partners' gateways decrypt (CBC) and AEAD (RFC 5083).
    public static let ciphers = ["aes-128-cbc", "aes-192-cbc", "aes-256-cbc", "aes-128-gcm", "aes-256-gcm"]
}

/// The digest algorithms of MICs and signatures, by the names RFC 5751 and AS1/AS2 partners use.
public enum MICAlgorithm: String, Sendable, Hashable, CaseIterable {
    case sha1 = "sha-1"
    case sha256 = "sha-256"
    case sha384 = "sha-384"
    case sha512 = "sha-512"

    /// Our preference, strongest first: a receipt uses the first the partner offers.
    static let preference: [MICAlgorithm] = [.sha256, .sha512, .sha384, .sha1]

    /// "sha256", "SHA-256", "sha1"...; nil for what we do not compute (md5).
    public init?(name: String) {
        let bare = name.trimmingCharacters(in: .whitespaces).lowercased().replacingOccurrences(of: "-", with: "")
        guard let algorithm = Self.allCases.first(where: { $0.rawValue.replacingOccurrences(of: "-", with: "") == bare }) else { return nil }
        self = algorithm
    }

    /// OpenSSL's name, for signing.
    var openSSLName: String { rawValue.replacingOccurrences(of: "-", with: "") }

    /// A running digest of this algorithm.
    func hasher() -> MICHasher { MICHasher(self) }
}

/// Digests bytes as they stream, for one ``MICAlgorithm``.
struct MICHasher {
    private var sha1 = Insecure.SHA1()
    private var sha256 = SHA256()
    private var sha384 = SHA384()
    private var sha512 = SHA512()
    let algorithm: MICAlgorithm

    init(_ algorithm: MICAlgorithm) {
        self.algorithm = algorithm
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        switch algorithm {
        case .sha1: sha1.update(bufferPointer: bytes)
        case .sha256: sha256.update(bufferPointer: bytes)
        case .sha384: sha384.update(bufferPointer: bytes)
        case .sha512: sha512.update(bufferPointer: bytes)
        }
    }

    /// `<base64>, <name>`: a Received-Content-MIC field's value; `name` as the partner wrote it.
    func mic(named name: String? = nil) -> String {
        let digest: Data = switch algorithm {
        case .sha1: Data(sha1.finalize())
        case .sha256: Data(sha256.finalize())
        case .sha384: Data(sha384.finalize())
        case .sha512: Data(sha512.finalize())
        }
        return digest.base64EncodedString() + ", " + (name ?? algorithm.rawValue)
    }

    /// The MIC of a file's bytes.
    static func mic(ofFile path: String, algorithm: MICAlgorithm, named name: String? = nil) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw SpoolError("open", path: path, errno: errno) }
        defer { try? handle.close() }
        var hasher = MICHasher(algorithm)
        while let chunk = try handle.read(upToCount: 256 << 10), !chunk.isEmpty {
            chunk.withUnsafeBytes { hasher.update($0) }
        }
        return hasher.mic(named: name)
    }
}

/// A site's S/MIME keys and trust, loaded (the password resolved) when a message needs them.
public struct SMIMECredentials: Sendable {
    public var identity: SMIMEIdentity?
    public var trust: SMIMETrust?
    public var partnerCertificates: [SMIMECertificate]

    /// Loads what `settings` names. The error names the field and says what to fix.
    public static func load(_ settings: SMIMESettings, site: String) throws -> SMIMECredentials {
        var identity: SMIMEIdentity?
        if let key = settings.key {
            let password: String?
            do {
                password = try settings.password?.resolve()
            } catch {
                throw SMIMEError.credentials("site \(site): smime.password: \(error)")
            }
            do {
                switch key {
                case .pem(let keyFile, let certificate):
                    identity = try SMIMEIdentity.pem(keyFile: keyFile, certificateFile: certificate, password: password)
                case .pkcs12(let file):
                    identity = try SMIMEIdentity.pkcs12(file: file, password: password)
                }
            } catch {
                throw SMIMEError.credentials("site \(site): smime key: \(error)")
            }
        }
        var certificates: [SMIMECertificate] = []
        for file in settings.partnerCertificates {
            certificates += try SMIMECertificate.load(file: file)
        }
        let trust = certificates.isEmpty ? nil : try SMIMETrust(certificates: certificates)
        return SMIMECredentials(identity: identity, trust: trust, partnerCertificates: certificates)
    }
}

extension SiteLoader {
    /// The `smime:` block. Files are relative to the site file and must be readable; the key
    /// itself is opened only when a message needs it (its password may come from the
    /// environment of the daemon, not of `site show`).
    func smimeSettings(_ node: ConfigNode) throws -> SMIMESettings {
        let map = try node.mapping()
        try map.rejectUnknownKeys([
            "certificate", "key", "pkcs12", "password", "password_file", "password_expires", "partner_certificates", "partner_signers",
            "require", "sign", "encrypt", "cipher", "digest",
        ])
        let base = (node.file as NSString).deletingLastPathComponent
        func path(_ child: ConfigNode) throws -> String {
            var value = try child.nonEmptyString()
            if !value.hasPrefix("/") { value = (base as NSString).appendingPathComponent(value) }
            guard FileManager.default.isReadableFile(atPath: value) else { throw child.error("cannot read \(value)") }
            return value
        }
        var key: SMIMESettings.Key?
        switch (map["key"], map["certificate"], map["pkcs12"]) {
        case (nil, nil, nil):
            key = nil
        case (let keyNode?, let certificateNode?, nil):
            key = .pem(key: try path(keyNode), certificate: try path(certificateNode))
        case (nil, nil, let pkcs12Node?):
            key = .pkcs12(try path(pkcs12Node))
        case (_, _, let pkcs12Node?):
            throw pkcs12Node.error("give either pkcs12 or key and certificate, not both")
        case (let keyNode?, nil, nil):
            throw keyNode.error("needs certificate: (the certificate of this key)")
        case (nil, let certificateNode?, nil):
            throw certificateNode.error("needs key: (the private key of this certificate), or use pkcs12:")
        }
        var partners: [String] = []
        if let partnerNode = map["partner_certificates"] {
            let items = (try? partnerNode.sequence()) ?? [partnerNode]
            for item in items {
                let file = try path(item)
                do {
                    _ = try SMIMECertificate.load(file: file)
                } catch {
                    throw item.error("\(error)")
                }
                partners.append(file)
            }
        }
        var signers: [String] = []
        if let signersNode = map["partner_signers"] {
            for item in (try? signersNode.sequence()) ?? [signersNode] {
                signers.append(try item.nonEmptyString())
            }
            if partners.isEmpty { throw signersNode.error("partner_signers needs partner_certificates (the CA that issues their certificates)") }
        }
        let requireNode = map["require"]
        let require = try requireNode.map { node in
            guard let value = SMIMESettings.Requirement(rawValue: try node.string().lowercased()) else {
                throw node.error("must be none, signed, encrypted or both")
            }
            return value
        } ?? SMIMESettings.Requirement.none
        if require.needsEncryption, key == nil {
            throw (requireNode ?? node).error("require: \(require.rawValue) needs our key (key and certificate, or pkcs12) to decrypt")
        }
        if require.needsSignature, partners.isEmpty {
            throw (requireNode ?? node).error("require: \(require.rawValue) needs partner_certificates to verify signatures with")
        }
        let sign = try map["sign"]?.bool() ?? false
        let encrypt = try map["encrypt"]?.bool() ?? false
        if sign, key == nil { throw (map["sign"] ?? node).error("sign: true needs our key (key and certificate, or pkcs12)") }
        if encrypt, partners.isEmpty { throw (map["encrypt"] ?? node).error("encrypt: true needs partner_certificates to encrypt for") }
        let cipherNode = map["cipher"]
        let cipher = try cipherNode?.string().lowercased() ?? "aes-256-cbc"
        guard SMIMESettings.ciphers.contains(cipher) else {
            throw (cipherNode ?? node).error("cipher must be one of \(SMIMESettings.ciphers.joined(separator: ", "))")
        }
        let digestNode = map["digest"]
        guard let digest = try MICAlgorithm(name: digestNode?.string() ?? "sha-256") else {
            throw (digestNode ?? node).error("digest must be one of \(MICAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return SMIMESettings(
            key: key, password: try secret(map, key: "password"), partnerCertificates: partners, partnerSigners: signers, require: require,
            sign: sign, encrypt: encrypt, cipher: cipher, digest: digest
        )
    }
}

/// A site's S/MIME credentials, loaded once when a message first needs them (one poll, one
/// load): the key's password is resolved then, not when the site file is read.
final class LazySMIMECredentials: Sendable {
    private let settings: SMIMESettings?
    private let site: String
    private let loaded = Mutex<Result<SMIMECredentials?, SMIMEError>?>(nil)

    init(settings: SMIMESettings?, site: String) {
        self.settings = settings
        self.site = site
    }

    /// nil when the site has no `smime:` block. A key or certificate that cannot be loaded is
    /// the site's configuration error: the poll fails, and the message stays on the server.
    func get() throws(SMIMEError) -> SMIMECredentials? {
        guard let settings else { return nil }
        let result = loaded.withLock { cached in
            if let cached { return cached }
            let result: Result<SMIMECredentials?, SMIMEError>
            do {
                result = .success(try SMIMECredentials.load(settings, site: site))
            } catch let error as SMIMEError {
                result = .failure(error)
            } catch {
                result = .failure(.credentials("site \(site): \(error)"))
            }
            cached = result
            return result
        }
        return try result.get()
    }
}
