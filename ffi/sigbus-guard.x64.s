# The SIGBUS handler of sigbus-guard.ts, x86-64 Linux (GNU as). Its bytes are X64.code there; the test
# test/ffi/sigbus-guard.test.ts assembles this file and compares. `table` is patched with the table's address.
# The table: the previous sigaction at 0, the first block of ranges at 32, all ranges' faults at 40. A block:
# the next block at 0 (or 0), its slots in use at 8, then slots of start, end, faults (24 bytes each).
.intel_syntax noprefix
handler:                            # rdi = signal, rsi = siginfo_t*, rdx = ucontext_t*
    cmp dword ptr [rsi+8], 2        # si_code: BUS_ADRERR (a file page past the end of the file)
    jne chain
    mov r8, [rip + table]
    mov rax, [rsi+16]               # si_addr
    mov r11, [r8+32]                # the first block
block:
    test r11, r11
    jz chain                        # no block left: not a range of ours
    mov rcx, [r11+8]                # its slots in use
    lea r9, [r11+16]                # its slots
scan:
    test rcx, rcx
    jz next_block
    cmp rax, [r9]
    jb next
    cmp rax, [r9+8]
    jae next
    lock inc qword ptr [r9+16]      # this range's faults
    lock inc qword ptr [r8+40]      # all ranges' faults
    push rdi
    push rsi
    push rdx
    and rax, -4096
    mov rdi, rax                    # mmap(page, 4096, PROT_READ | PROT_WRITE,
    mov esi, 4096                   #      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
    mov edx, 3
    mov r10d, 0x32
    mov r8, -1
    xor r9d, r9d
    mov eax, 9
    syscall
    pop rdx
    pop rsi
    pop rdi
    cmp rax, -4096
    ja chain                        # mmap failed: as if we were not here
    ret                             # the read runs again and sees zeros
next:
    add r9, 24
    dec rcx
    jmp scan
next_block:
    mov r11, [r11]
    jmp block
chain:
    mov r8, [rip + table]
    mov rax, [r8]                   # the handler before ours
    cmp rax, 1
    jbe fallback                    # SIG_DFL or SIG_IGN
    jmp rax                         # with this call's arguments
fallback:
    mov r10d, 8                     # rt_sigaction(SIGBUS, the previous action, NULL, 8): the read faults
    xor edx, edx                    # again and the default action ends the process, as without us
    mov rsi, r8
    mov edi, 7
    mov eax, 13
    syscall
    ret
restorer:
    mov eax, 15                     # rt_sigreturn
    syscall
table:
