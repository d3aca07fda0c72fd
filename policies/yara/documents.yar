// Active content in PDF and RTF documents.

rule pdf_javascript : script
{
    meta:
        description = "PDF with JavaScript"
    strings:
        $js1 = "/JavaScript"
        $js2 = "/JS"
    condition:
        uint32(0) == 0x46445025 and any of them
}

rule pdf_launch_action : executable
{
    meta:
        description = "PDF with a Launch action (starts a program or opens a file)"
    strings:
        $l = /\/S\s*\/Launch/
    condition:
        uint32(0) == 0x46445025 and $l
}

rule rtf_embedded_object : macro
{
    meta:
        description = "RTF document with an embedded OLE object"
    strings:
        $obj = /\\objdata|\\objupdate|\\objemb/
    condition:
        uint32(0) == 0x74725C7B and $obj
}

// test: pdf_javascript matches "%PDF-1.4\n1 0 obj << /OpenAction << /S /JavaScript /JS (app.alert(1)) >> >>"
// test: pdf_javascript ignores "%PDF-1.4\n1 0 obj << /Type /Catalog >>"
// test: rtf_embedded_object matches "{\\rtf1{\\object\\objemb{\\*\\objdata 0105}}}"
