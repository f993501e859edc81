internal import COpenSSL
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A verified signature: who signed, and how each signer is trusted.
public struct SignatureVerification: Sendable, Hashable {
    public struct Signer: Sendable, Hashable {
        /// The subject of the signer's certificate, RFC 2253 form.
        public var subject: String
        /// The addresses the certificate is for (``SMIMECertificate/emails``).
        public var emails: [String]
        /// The certificate itself is one the site trusts: the partner is pinned. Otherwise it
        /// was trusted because a CA the site trusts issued it, which says nothing of whose it is.
        public var isPinned: Bool
        /// ``SMIMECertificate/isForSMIMESigning``.
        public var isForSMIMESigning: Bool
    }

    public var details: [Signer]

    /// The subjects of the signers' certificates, RFC 2253 form.
    public var signers: [String] { details.map(\.subject) }
}

/// The four CMS operations S/MIME needs, over OpenSSL, each streaming from file to file: memory
/// stays at OpenSSL's buffers whatever the content's size (see ``SplitCMS`` for how a received
/// structure is handed over without its content).
///
/// Each call is synchronous and reads OpenSSL's per-thread error queue before it returns: call
/// them off the event loops, one operation per call.
public enum CMS {
    /// Decrypts the EnvelopedData or AuthEnvelopedData in `cmsFile` (DER or BER) into `output`.
    /// `scratch` holds the encrypted content meanwhile (removed before returning). On failure
    /// `output` is removed: a partly decrypted file is never left to be read.
    @discardableResult
    public static func decrypt(cmsFile: String, identity: SMIMEIdentity, output: String, scratch: String) throws(SMIMEError) -> CMSKind {
        defer { unlink(scratch) }
        let split = try split(cmsFile, contentTo: scratch)
        guard split.kind == .enveloped || split.kind == .authEnveloped else {
            throw .malformed("not an encrypted message: the CMS structure is \(split.kind)")
        }
        guard split.hadContent else { throw .malformed("the encrypted message carries no content") }
        do {
            try withStructure(split.detachedStructure) { cms throws(SMIMEError) in
                if gp_cms_has_recipient(cms, identity.certificate.x509) == 0 {
                    throw .notForUs(detail: "our certificate is \(identity.certificate.subject)")
                }
                try withFileBIOs(input: scratch, output: output) { content, out throws(SMIMEError) in
                    guard CMS_decrypt(cms, identity.key, identity.certificate.x509, content, out, UInt32(CMS_BINARY)) == 1 else {
                        let entries = OpenSSLErrors.drain()
                        let detail = OpenSSLErrors.text(entries, fallback: "OpenSSL gave no reason")
                        if entries.contains(where: { $0.library == ERR_LIB_CMS && $0.reason == CMS_R_NO_MATCHING_RECIPIENT }) {
                            throw .notForUs(detail: "our certificate is \(identity.certificate.subject)")
                        }
                        throw .decryptionFailed(detail: explained(detail))
                    }
                }
            }
        } catch {
            unlink(output)
            throw error
        }
        return split.kind
    }

    /// Verifies the SignedData in `cmsFile` (opaque signing: the content inside) against
    /// `trust`, writing the signed content to `output` (removed on failure).
    public static func verifyOpaque(cmsFile: String, trust: SMIMETrust, output: String, scratch: String) throws(SMIMEError) -> SignatureVerification {
        defer { unlink(scratch) }
        let split = try split(cmsFile, contentTo: scratch)
        guard split.kind == .signed else { throw .malformed("not a signed message: the CMS structure is \(split.kind)") }
        guard split.hadContent else { throw .malformed("the signed-data carries no content (a detached signature without its content)") }
        let verification = try verify(structure: split.detachedStructure, content: scratch, trust: trust)
        // The content is what was verified: moved into place only now.
        guard rename(scratch, output) == 0 else { throw SMIMEError.file("move", path: output, errno: errno) }
        return verification
    }

    /// Verifies a detached signature (`signature`: the DER of an application/pkcs7-signature)
    /// over the bytes in `content` against `trust`.
    public static func verifyDetached(content: String, signature: [UInt8], trust: SMIMETrust) throws(SMIMEError) -> SignatureVerification {
        try verify(structure: signature, content: content, trust: trust)
    }

    private static func verify(structure: [UInt8], content: String, trust: SMIMETrust) throws(SMIMEError) -> SignatureVerification {
        try withStructure(structure) { cms throws(SMIMEError) in
            guard OBJ_obj2nid(CMS_get0_type(cms)) == NID_pkcs7_signed else {
                throw .malformed("the signature is not a CMS signed-data structure")
            }
            return try withFileBIOs(input: content, output: nil) { data, _ throws(SMIMEError) in
                let certificates = try stack(trust.certificates)
                defer { gp_sk_X509_free(certificates) }
                guard CMS_verify(cms, certificates, trust.store, data, nil, UInt32(CMS_BINARY)) == 1 else {
                    throw .signatureInvalid(detail: explained(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "OpenSSL gave no reason")))
                }
                var signers: [SignatureVerification.Signer] = []
                if let found = CMS_get0_signers(cms) {
                    for index in 0 ..< gp_sk_X509_num(found) {
                        guard let x509 = gp_sk_X509_value(found, index), X509_up_ref(x509) == 1 else { continue }
                        let certificate = SMIMECertificate(taking: x509)
                        signers.append(SignatureVerification.Signer(
                            subject: certificate.subject, emails: certificate.emails,
                            isPinned: trust.certificates.contains { $0.isSame(as: x509) },
                            isForSMIMESigning: certificate.isForSMIMESigning
                        ))
                    }
                    gp_sk_X509_free(found)
                }
                return SignatureVerification(details: signers)
            }
        }
    }

    /// A detached signature (DER SignedData without content) over the bytes in `content`, by
    /// `identity`, with `digest` ("sha256", "sha1", ...), its chain included.
    public static func signDetached(content: String, identity: SMIMEIdentity, digest: String) throws(SMIMEError) -> [UInt8] {
        try withFileBIOs(input: content, output: nil) { data, _ throws(SMIMEError) in
            try sign(data, identity: identity, digest: digest)
        }
    }

    /// A detached signature over `bytes` (a receipt: small).
    public static func signDetached(bytes: [UInt8], identity: SMIMEIdentity, digest: String) throws(SMIMEError) -> [UInt8] {
        OpenSSLErrors.clear()
        // BIO_new_mem_buf does not copy: the BIO lives only while the bytes are borrowed.
        let signed: Result<[UInt8], SMIMEError> = bytes.withUnsafeBytes { buffer in
            guard let readOnly = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else { return .failure(.operationFailed("out of memory")) }
            defer { BIO_free(readOnly) }
            return Result { () throws(SMIMEError) in try sign(readOnly, identity: identity, digest: digest) }
        }
        return try signed.get()
    }

    private static func sign(_ data: OpaquePointer, identity: SMIMEIdentity, digest: String) throws(SMIMEError) -> [UInt8] {
        OpenSSLErrors.clear()
        guard let algorithm = EVP_get_digestbyname(digest) else { throw .operationFailed("unknown digest \(digest)") }
        let chain = try stack(identity.chain)
        defer { gp_sk_X509_free(chain) }
        let flags = UInt32(CMS_PARTIAL | CMS_DETACHED | CMS_BINARY)
        guard let cms = CMS_sign(nil, nil, chain, nil, flags) else {
            throw .operationFailed("cannot sign: \(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "CMS_sign failed"))")
        }
        defer { CMS_ContentInfo_free(cms) }
        guard CMS_add1_signer(cms, identity.certificate.x509, identity.key, algorithm, UInt32(CMS_BINARY)) != nil else {
            throw .operationFailed("cannot sign with \(identity.certificate.subject): \(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "no signer"))")
        }
        guard CMS_final(cms, data, nil, flags) == 1, let out = BIO_new(BIO_s_mem()) else {
            throw .operationFailed("cannot sign: \(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "CMS_final failed"))")
        }
        defer { BIO_free(out) }
        guard i2d_CMS_bio(out, cms) == 1 else {
            throw .operationFailed("cannot encode the signature: \(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "i2d_CMS_bio failed"))")
        }
        return MemoryBIO.bytes(out)
    }

    /// Encrypts the bytes in `content` for `recipients` with `cipher` ("aes-256-cbc",
    /// "aes-128-gcm", ...; an AEAD cipher makes AuthEnvelopedData) into `output` as BER
    /// (DER with indefinite lengths, streamed).
    public static func encrypt(content: String, recipients: [SMIMECertificate], cipher: String, output: String) throws(SMIMEError) {
        OpenSSLErrors.clear()
        guard let algorithm = EVP_get_cipherbyname(cipher) else { throw .operationFailed("unknown cipher \(cipher)") }
        let certificates = try stack(recipients)
        defer { gp_sk_X509_free(certificates) }
        do {
            try withFileBIOs(input: content, output: output) { data, out throws(SMIMEError) in
                let flags = UInt32(CMS_BINARY | CMS_STREAM)
                guard let cms = CMS_encrypt(certificates, data, algorithm, flags) else {
                    throw .operationFailed("cannot encrypt: \(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "CMS_encrypt failed"))")
                }
                defer { CMS_ContentInfo_free(cms) }
                guard let out, i2d_CMS_bio_stream(out, cms, data, Int32(flags)) == 1 else {
                    throw .operationFailed("cannot encrypt: \(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "i2d_CMS_bio_stream failed"))")
                }
            }
        } catch {
            unlink(output)
            throw error
        }
    }

    // MARK: Helpers

    private static func split(_ cmsFile: String, contentTo scratch: String) throws(SMIMEError) -> SplitCMS {
        do {
            return try CMSSplitter.split(input: cmsFile, contentOutput: scratch)
        } catch let error as SMIMEError {
            throw error
        } catch {
            throw .malformed("\(error)")
        }
    }

    /// OpenSSL's reasons, with the common ones said for an operator.
    static func explained(_ detail: String) -> String {
        let lowered = detail.lowercased()
        if lowered.contains("content verify error") || lowered.contains("verification failure") && lowered.contains("digest") {
            return "the content was changed after it was signed (digest mismatch): \(detail)"
        }
        if lowered.contains("signer certificate not found") {
            return "the signer's certificate is neither in the message nor among the site's smime partner certificates: \(detail)"
        }
        if lowered.contains("certificate has expired") { return "the signer's certificate has expired: \(detail)" }
        if lowered.contains("certificate signature failure") {
            return "the signer is not trusted: its certificate names an issuer the site trusts, but that issuer did not sign it: \(detail)"
        }
        if lowered.contains("unable to get local issuer certificate") || lowered.contains("self-signed certificate") || lowered.contains("unable to get issuer") {
            return "the signer is not trusted by the site's smime partner certificates: \(detail)"
        }
        if lowered.contains("bad decrypt") || lowered.contains("cipherfinal error") {
            return "the key does not open it, or the message is damaged: \(detail)"
        }
        return detail
    }

    private static func withStructure<T>(_ der: [UInt8], _ body: (OpaquePointer) throws(SMIMEError) -> T) throws(SMIMEError) -> T {
        OpenSSLErrors.clear()
        let parsed: OpaquePointer? = der.withUnsafeBytes { bytes in
            guard let bio = BIO_new_mem_buf(bytes.baseAddress, Int32(bytes.count)) else { return nil }
            defer { BIO_free(bio) }
            return d2i_CMS_bio(bio, nil)
        }
        guard let cms = parsed else {
            throw .malformed("malformed CMS structure: \(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "OpenSSL cannot parse it"))")
        }
        defer { CMS_ContentInfo_free(cms) }
        return try body(cms)
    }

    private static func withFileBIOs<T>(
        input: String, output: String?, _ body: (OpaquePointer, OpaquePointer?) throws(SMIMEError) -> T
    ) throws(SMIMEError) -> T {
        guard let data = BIO_new_file(input, "rb") else {
            throw .file("cannot open \(input): \(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "unreadable"))")
        }
        defer { BIO_free(data) }
        var out: OpaquePointer?
        if let output {
            let descriptor = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else { throw .file("create", path: output, errno: errno) }
            guard let bio = BIO_new_fd(descriptor, BIO_CLOSE) else {
                close(descriptor)
                throw .file("cannot write \(output)")
            }
            out = bio
        }
        defer { if let out { BIO_free(out) } }
        let result = try body(data, out)
        if let out, let output, gp_BIO_flush(out) != 1 {
            throw .file("cannot write \(output): \(OpenSSLErrors.text(OpenSSLErrors.drain(), fallback: "flush failed"))")
        }
        return result
    }

    /// A STACK_OF(X509) borrowing the certificates (freed with gp_sk_X509_free, not pop_free).
    private static func stack(_ certificates: [SMIMECertificate]) throws(SMIMEError) -> OpaquePointer {
        guard let stack = gp_sk_X509_new_null() else { throw .operationFailed("out of memory") }
        for certificate in certificates { _ = gp_sk_X509_push(stack, certificate.x509) }
        return stack
    }
}
