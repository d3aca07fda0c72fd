// Executables: Windows PE, ELF and Mach-O, as a file of their own or embedded in another
// file (a document, an archive entry the guard could not unpack, a polyglot).
import "pe"

rule pe_executable : executable
{
    meta:
        description = "Windows PE executable or DLL (MZ header with a PE header at e_lfanew)"
    condition:
        pe.is_pe
}

rule pe_embedded : executable
{
    meta:
        description = "PE executable embedded after the start of the file"
    strings:
        // DOS header: "MZ", then the bytes-on-last-page word of common linkers.
        $mz = { 4D 5A (90 | 50 | 00 | 78) 00 }
    condition:
        for any i in (1..#mz) : ( // suppress: potentially_slow_loop
            @mz[i] > 0
            and uint32(@mz[i] + 0x3C) >= 0x40
            and uint32(@mz[i] + 0x3C) < 0x400
            and uint32(@mz[i] + uint32(@mz[i] + 0x3C)) == 0x00004550
        )
}

rule elf_executable : executable
{
    meta:
        description = "ELF executable, shared object or core file"
    condition:
        uint32(0) == 0x464C457F
}

rule elf_embedded : executable
{
    meta:
        description = "ELF header after the start of the file (class, byte order and version valid)"
    strings:
        $elf = { 7F 45 4C 46 (01 | 02) (01 | 02) 01 00 00 00 00 00 00 00 00 00 (01 | 02 | 03 | 04) 00 }
    condition:
        for any i in (1..#elf) : (@elf[i] > 0) // suppress: potentially_slow_loop
}

rule macho_executable : executable
{
    meta:
        description = "Mach-O executable (thin or universal)"
    condition:
        uint32(0) == 0xFEEDFACE or uint32(0) == 0xFEEDFACF
        or uint32(0) == 0xCEFAEDFE or uint32(0) == 0xCFFAEDFE
        // Universal binaries share CAFEBABE with Java class files; those have a class-file
        // version (45 and more) where a universal binary has its small architecture count.
        or (uint32be(0) == 0xCAFEBABE and uint32be(4) > 0 and uint32be(4) < 20)
}

// test: elf_executable matches "\x7FELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3E\x00"
// test: elf_embedded matches "text before \x7FELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3E\x00"
// test: macho_executable ignores "\xCA\xFE\xBA\xBE\x00\x00\x00\x34 a Java class"
