internal import COpenSSL
import Foundation

/// An X.509 certificate held by OpenSSL: a partner's, a CA's, or ours.
public final class SMIMECertificate: @unchecked Sendable {
    // Immutable after init; OpenSSL's X509 objects are safe to read from several threads.
    let x509: OpaquePointer

    init(taking x509: OpaquePointer) {
        self.x509 = x509
    }

    deinit { X509_free(x509) }

    /// The subject in RFC 2253 form ("CN=Acme EDI,O=Acme").
    public var subject: String { Self.name(X509_get_subject_name(x509)) }
    public var issuer: String { Self.name(X509_get_issuer_name(x509)) }

    public var notAfter: Date? { Self.date(X509_get0_notAfter(x509)) }

    /// The e-mail addresses the certificate is for: its subjectAltName rfc822Names and its
    /// subject's emailAddress.
    public var emails: [String] {
        guard let stack = X509_get1_email(x509) else { return [] }
        defer { X509_email_free(stack) }
        return (0 ..< gp_sk_OPENSSL_STRING_num(stack)).compactMap { index in
            gp_sk_OPENSSL_STRING_value(stack, index).map { String(cString: $0) }
        }
    }

    /// Whether the certificate may sign S/MIME messages: its key usage (digital signature or
    /// non-repudiation) and extended key usage (e-mail protection), where it states them.
    public var isForSMIMESigning: Bool {
        X509_check_purpose(x509, X509_PURPOSE_SMIME_SIGN, 0) == 1
    }

    /// The same certificate (byte for byte) as `other`.
    func isSame(as other: OpaquePointer) -> Bool { X509_cmp(x509, other) == 0 }

    static func name(_ name: OpaquePointer?) -> String {
        guard let name, let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        guard X509_NAME_print_ex(bio, name, 0, gp_XN_FLAG_RFC2253()) >= 0 else { return "" }
        return MemoryBIO.string(bio)
    }

    static func date(_ time: UnsafePointer<ASN1_TIME>?) -> Date? {
        guard let time else { return nil }
        var parts = tm()
        guard ASN1_TIME_to_tm(time, &parts) == 1 else { return nil }
        return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)))
    }

    /// Every certificate in a PEM file (one or a bundle), or the one in a DER file.
    public static func load(file path: String) throws(SMIMEError) -> [SMIMECertificate] {
        OpenSSLErrors.clear()
        guard let bio = BIO_new_file(path, "rb") else {
            throw .credentials("cannot read certificate file \(path): \(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "no such file"))")
        }
        defer { BIO_free(bio) }
        var certificates: [SMIMECertificate] = []
        while let x509 = PEM_read_bio_X509(bio, nil, nil, nil) {
            certificates.append(SMIMECertificate(taking: x509))
        }
        // The end of the PEM file is an "error" in the queue.
        OpenSSLErrors.clear()
        if certificates.isEmpty {
            BIO_ctrl(bio, BIO_CTRL_RESET, 0, nil)
            if let x509 = d2i_X509_bio(bio, nil) { certificates.append(SMIMECertificate(taking: x509)) }
        }
        guard !certificates.isEmpty else {
            throw .credentials("\(path) holds no certificate (PEM or DER): \(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "nothing found"))")
        }
        return certificates
    }
}

/// Our side: the private key that decrypts and signs, its certificate, and the chain sent with
/// signatures.
public final class SMIMEIdentity: @unchecked Sendable {
    let key: OpaquePointer
    public let certificate: SMIMECertificate
    public let chain: [SMIMECertificate]

    init(key: OpaquePointer, certificate: SMIMECertificate, chain: [SMIMECertificate]) {
        self.key = key
        self.certificate = certificate
        self.chain = chain
    }

    deinit { EVP_PKEY_free(key) }

    /// A PEM private key (encrypted with `password`, or not) and its PEM certificate (the
    /// certificates after the first in that file are the chain).
    public static func pem(keyFile: String, certificateFile: String, password: String?) throws(SMIMEError) -> SMIMEIdentity {
        OpenSSLErrors.clear()
        guard let bio = BIO_new_file(keyFile, "rb") else {
            throw .credentials("cannot read key file \(keyFile): \(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "no such file"))")
        }
        defer { BIO_free(bio) }
        // An empty password rather than none: without one OpenSSL would prompt on the terminal.
        let key = (password ?? "").withCString { passphrase in
            PEM_read_bio_PrivateKey(bio, nil, nil, UnsafeMutableRawPointer(mutating: passphrase))
        }
        guard let key else {
            let reason = OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "no key")
            throw .credentials("cannot load the private key in \(keyFile) (\(password == nil ? "no password given" : "wrong password?")): \(reason)")
        }
        let certificates: [SMIMECertificate]
        do {
            certificates = try SMIMECertificate.load(file: certificateFile)
        } catch {
            EVP_PKEY_free(key)
            throw error
        }
        return try matched(key: key, certificates: certificates, source: "\(keyFile) and \(certificateFile)")
    }

    /// A PKCS#12 file (.p12, .pfx) with the key, its certificate and perhaps a chain.
    public static func pkcs12(file: String, password: String?) throws(SMIMEError) -> SMIMEIdentity {
        OpenSSLErrors.clear()
        guard let bio = BIO_new_file(file, "rb") else {
            throw .credentials("cannot read PKCS#12 file \(file): \(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "no such file"))")
        }
        defer { BIO_free(bio) }
        guard let p12 = d2i_PKCS12_bio(bio, nil) else {
            throw .credentials("\(file) is no PKCS#12 file: \(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "unreadable"))")
        }
        defer { PKCS12_free(p12) }
        var key: OpaquePointer?
        var x509: OpaquePointer?
        var ca: OpaquePointer?
        let parsed = (password ?? "").withCString { PKCS12_parse(p12, $0, &key, &x509, &ca) }
        guard parsed == 1, let key, let x509 else {
            if let key { EVP_PKEY_free(key) }
            if let x509 { X509_free(x509) }
            if let ca { gp_sk_X509_pop_free(ca) }
            throw .credentials("cannot open PKCS#12 file \(file) (wrong password?): \(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "no key or certificate"))")
        }
        var certificates = [SMIMECertificate(taking: x509)]
        if let ca {
            for index in 0 ..< gp_sk_X509_num(ca) {
                if let certificate = gp_sk_X509_value(ca, index), X509_up_ref(certificate) == 1 {
                    certificates.append(SMIMECertificate(taking: certificate))
                }
            }
            gp_sk_X509_pop_free(ca)
        }
        return try matched(key: key, certificates: certificates, source: file)
    }

    private static func matched(key: OpaquePointer, certificates: [SMIMECertificate], source: String) throws(SMIMEError) -> SMIMEIdentity {
        guard let certificate = certificates.first, X509_check_private_key(certificate.x509, key) == 1 else {
            EVP_PKEY_free(key)
            OpenSSLErrors.clear()
            throw .credentials("the private key and the certificate in \(source) do not belong together")
        }
        return SMIMEIdentity(key: key, certificate: certificate, chain: Array(certificates.dropFirst()))
    }
}

/// Whom we believe: the partner's certificates, or the CA that issues them. Each is a trust
/// anchor of its own (a partner's self-signed or CA-issued certificate alike): trust in B2B is
/// configured per partner, not inherited from a public CA list.
public final class SMIMETrust: @unchecked Sendable {
    let store: OpaquePointer
    public let certificates: [SMIMECertificate]

    public init(certificates: [SMIMECertificate]) throws(SMIMEError) {
        guard let store = X509_STORE_new() else { throw .operationFailed("cannot allocate a certificate store") }
        for certificate in certificates {
            X509_STORE_add_cert(store, certificate.x509)
        }
        // A configured end-entity certificate is an anchor by itself; the validity period is
        // still checked (an expired signer is refused).
        X509_STORE_set_flags(store, UInt(X509_V_FLAG_PARTIAL_CHAIN))
        // A pinned partner certificate carries whatever key usage its PKI gave it: believing
        // it is this configuration, not an extended key usage. A signer trusted through a CA
        // is held to S/MIME signing and to the partner's identity by the site's signer rule
        // (``SignatureVerification/Signer``), which sees the message.
        X509_STORE_set_purpose(store, X509_PURPOSE_ANY)
        self.store = store
        self.certificates = certificates
    }

    deinit { X509_STORE_free(store) }

    public convenience init(files: [String]) throws(SMIMEError) {
        var certificates: [SMIMECertificate] = []
        for file in files { certificates += try SMIMECertificate.load(file: file) }
        try self.init(certificates: certificates)
    }
}

enum MemoryBIO {
    static func string(_ bio: OpaquePointer) -> String {
        String(decoding: bytes(bio), as: UTF8.self)
    }

    static func bytes(_ bio: OpaquePointer) -> [UInt8] {
        var pointer: UnsafeMutablePointer<CChar>?
        let count = gp_BIO_get_mem_data(bio, &pointer)
        guard count > 0, let pointer else { return [] }
        return pointer.withMemoryRebound(to: UInt8.self, capacity: count) { Array(UnsafeBufferPointer(start: $0, count: count)) }
    }
}
