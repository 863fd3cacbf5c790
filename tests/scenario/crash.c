/* placeholder: crash scenario, being written */
int main(void)
{
	return 77;
}
