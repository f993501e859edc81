import GatepostMIME
import Testing

@Suite struct SignedContentExtractorTests {
    static let message = Array("""
    From: a@example.com\r
    Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary="sig"\r
    \r
    preamble\r
    --sig\r
    Content-Type: text/plain\r
    \r
    line one\r
    --sigh is not the boundary\r
    \r
    --sig\r
    Content-Type: application/pkcs7-signature\r
    \r
    MIAG\r
    --sig--\r

    """.utf8)
    /// RFC 1847: the content ends before the line break that precedes the next boundary.
    static let signed = Array("Content-Type: text/plain\r\n\r\nline one\r\n--sigh is not the boundary\r\n".utf8)

    static func extract(_ bytes: [UInt8], chunk: Int, boundary: String = "sig") throws -> ([UInt8], Bool) {
        var extractor = SignedContentExtractor(boundary: boundary)
        var output: [UInt8] = []
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + chunk)
            try bytes[start ..< end].withUnsafeBytes { try extractor.feed($0) { output.append(contentsOf: $0) } }
            start = end
        }
        return (output, extractor.isComplete)
    }

    @Test(arguments: [1, 2, 3, 7, 64, 4096])
    func theSignedBytesAreTheSameInAnyChunks(chunk: Int) throws {
        let (output, complete) = try Self.extract(Self.message, chunk: chunk)
        #expect(complete)
        #expect(output == Self.signed)
    }

    @Test func aMessageWithoutItsClosingBoundaryIsIncomplete() throws {
        let cut = Array(Self.message.prefix(90))
        #expect(try Self.extract(cut, chunk: 16).1 == false)
    }

    @Test func anEndlessLineIsALimitNotMemory() {
        var extractor = SignedContentExtractor(boundary: "sig", maxLineLength: 1024)
        let line = [UInt8](repeating: 0x41, count: 4096)
        #expect(throws: MIMEError.limitExceeded(.lineLength)) {
            try line.withUnsafeBytes { try extractor.feed($0) { _ in } }
        }
    }
}
