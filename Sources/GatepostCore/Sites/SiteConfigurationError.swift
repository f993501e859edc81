/// A site file that cannot be used. The description names the file, the line and the field, so
/// an operator can go straight to it: `sites/acme.yaml:7: pop3.port: must be a number from 1 to 65535`.
public struct SiteConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var field: String?
    public var message: String
    /// The file's other errors, found in the same reading: one run names them all.
    public var others: [SiteConfigurationError] = []

    /// This error and the others, each on its own.
    public var all: [SiteConfigurationError] {
        var first = self
        first.others = []
        return [first] + others.flatMap(\.all)
    }

    public init(file: String, line: Int?, field: String?, message: String) {
        self.file = file
        self.line = line
        self.field = field
        self.message = message
    }

    public var description: String {
        ([single] + others.map(\.description)).joined(separator: "\n")
    }

    private var single: String {
        var text = file
        if let line { text += ":\(line)" }
        text += ": "
        if let field { text += "\(field): " }
        return text + message
    }
}
