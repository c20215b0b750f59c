/** A CSPRNG; tests may pass a seeded one. */
export interface Random {
  bytes(n: number): Buffer;
}
