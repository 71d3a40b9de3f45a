/** What an operator must never read on a screen: a developer's words. */
export const DEVELOPER_WORDS: readonly RegExp[] = [
  /\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b/, // an environment variable or an error code
  /\blinesign\b/i, // a command
  /(^|\s)--?[a-z]/, // a command-line option
  /\$\{?\w/, // a shell variable
  /\.json\b|\.conf\b|\/[a-z]/i, // a file or a path
  /\bat \S+ \(|\bError:|\bstack\b/i, // a stack
  /\bPKCS|\bCSR\b|\bCKR_/, // driver words
];

/** The first developer's word in `text`, or null. */
export function developerWord(text: string): string | null {
  for (const re of DEVELOPER_WORDS) {
    const m = re.exec(text);
    if (m) return m[0];
  }
  return null;
}
